"""Liveness and identity."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from agentdesk.server.deps import CallerDep

router = APIRouter()


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


class Me(BaseModel):
    id: str
    name: str
    email: str
    role: str
    team_ids: list[str]


@router.get("/api/v1/me", tags=["agents"])
def me(caller: CallerDep) -> Me:
    agent = caller.agent
    return Me(id=agent.id, name=agent.name, email=agent.email, role=agent.role, team_ids=caller.teams)
