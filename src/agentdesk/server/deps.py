"""FastAPI dependencies: the database session and the calling agent."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from agentdesk.server.auth import agent_for_token, team_ids
from agentdesk.server.db import session as open_session
from agentdesk.server.models import Agent

_bearer = HTTPBearer(auto_error=False)


def get_session(request: Request) -> Iterator[Session]:
    with open_session(request.app.state.engine) as session:
        yield session


@dataclass(frozen=True)
class Caller:
    agent: Agent
    teams: list[str]


def get_caller(
    session: Annotated[Session, Depends(get_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    agent = agent_for_token(session, credentials.credentials) if credentials else None
    if agent is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Missing or invalid API token.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Caller(agent=agent, teams=team_ids(session, agent.id))


SessionDep = Annotated[Session, Depends(get_session)]
CallerDep = Annotated[Caller, Depends(get_caller)]
