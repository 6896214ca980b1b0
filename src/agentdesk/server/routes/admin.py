"""Admin API (admin role only): agents, teams, memberships and API tokens.

Every write goes through server/admin.py, the same functions the `agentdesk admin` commands use, so the
rules and messages are the same; an AdminError becomes 400, 404 (NotFound) or 409 (Conflict). Agents and
teams are named in paths by id, or by email / name. A token's hash never leaves the server, and the token
itself is in the response only once, when it is issued.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from agentdesk.server import admin
from agentdesk.server.deps import SessionDep, require_role
from agentdesk.server.models import ApiToken

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], dependencies=[Depends(require_role("admin"))])


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except admin.AdminError as exc:
        raise HTTPException(exc.status, str(exc)) from exc


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------- agents


class AgentOut(BaseModel):
    id: str
    name: str
    email: str
    role: str
    active: bool
    teams: list[str]
    skills: list[str]
    capacity: dict[str, int]
    presence: str
    created_at: datetime


def _agent_out(info: admin.AgentInfo) -> AgentOut:
    a = info.agent
    return AgentOut(
        id=a.id, name=a.name, email=a.email, role=a.role, active=a.active, teams=info.teams, skills=a.skills,
        capacity=a.capacity, presence=a.presence, created_at=a.created_at,
    )


def _agent(session: SessionDep, ref: str) -> AgentOut:
    return _agent_out(admin.agent_info(session, ref))


class AgentIn(_In):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    role: str = "agent"
    teams: list[str] = Field(default_factory=list, max_length=100)
    skills: list[str] = Field(default_factory=list, max_length=100)
    capacity: dict[str, int] = Field(default_factory=dict)


class SkillsIn(_In):
    skills: list[str] = Field(max_length=100)


class CapacityIn(_In):
    capacity: dict[str, int]


class RoleIn(_In):
    role: str


@router.get("/agents")
def list_agents(session: SessionDep) -> list[AgentOut]:
    return [_agent_out(info) for info in admin.list_agents(session)]


@router.post("/agents", status_code=status.HTTP_201_CREATED)
def add_agent(session: SessionDep, body: AgentIn) -> AgentOut:
    with _refusals():
        agent = admin.add_agent(
            session, body.name, body.email, role=body.role, teams=body.teams, skills=body.skills, capacity=body.capacity
        )
        return _agent(session, agent.id)


@router.get("/agents/{agent}")
def get_agent(session: SessionDep, agent: str) -> AgentOut:
    with _refusals():
        return _agent(session, agent)


@router.post("/agents/{agent}/disable")
def disable_agent(session: SessionDep, agent: str) -> AgentOut:
    with _refusals():
        return _agent(session, admin.disable_agent(session, agent).id)


@router.post("/agents/{agent}/enable")
def enable_agent(session: SessionDep, agent: str) -> AgentOut:
    with _refusals():
        return _agent(session, admin.enable_agent(session, agent).id)


@router.put("/agents/{agent}/skills")
def set_skills(session: SessionDep, agent: str, body: SkillsIn) -> AgentOut:
    with _refusals():
        return _agent(session, admin.set_agent_skills(session, agent, body.skills).id)


@router.put("/agents/{agent}/capacity")
def set_capacity(session: SessionDep, agent: str, body: CapacityIn) -> AgentOut:
    with _refusals():
        return _agent(session, admin.set_agent_capacity(session, agent, body.capacity).id)


@router.put("/agents/{agent}/role")
def set_role(session: SessionDep, agent: str, body: RoleIn) -> AgentOut:
    with _refusals():
        return _agent(session, admin.set_agent_role(session, agent, body.role).id)


@router.put("/agents/{agent}/teams/{team}")
def add_to_team(session: SessionDep, agent: str, team: str) -> AgentOut:
    with _refusals():
        admin.add_agent_to_team(session, agent, team)
        return _agent(session, agent)


@router.delete("/agents/{agent}/teams/{team}")
def remove_from_team(session: SessionDep, agent: str, team: str) -> AgentOut:
    with _refusals():
        admin.remove_agent_from_team(session, agent, team)
        return _agent(session, agent)


# ---------------------------------------------------------------------------------------------- teams


class TeamOut(BaseModel):
    id: str
    name: str
    active: bool
    routing: str
    timezone: str
    hours: dict[str, str]
    holidays: list[str]
    members: int


def _team_out(info: admin.TeamInfo) -> TeamOut:
    t = info.team
    return TeamOut(
        id=t.id, name=t.name, active=t.active, routing=t.routing, timezone=t.timezone, hours=t.hours,
        holidays=t.holidays, members=info.members,
    )


def _team(session: SessionDep, ref: str) -> TeamOut:
    return _team_out(admin.team_info(session, ref))


class TeamIn(_In):
    name: str = Field(min_length=1, max_length=200)
    routing: str = "round_robin"
    timezone: str = "UTC"


@router.get("/teams")
def list_teams(session: SessionDep) -> list[TeamOut]:
    return [_team_out(info) for info in admin.list_teams(session)]


@router.post("/teams", status_code=status.HTTP_201_CREATED)
def add_team(session: SessionDep, body: TeamIn) -> TeamOut:
    with _refusals():
        return _team(session, admin.add_team(session, body.name, routing=body.routing, timezone=body.timezone).id)


@router.post("/teams/{team}/disable")
def disable_team(session: SessionDep, team: str) -> TeamOut:
    with _refusals():
        return _team(session, admin.disable_team(session, team).id)


@router.post("/teams/{team}/enable")
def enable_team(session: SessionDep, team: str) -> TeamOut:
    with _refusals():
        return _team(session, admin.enable_team(session, team).id)


# ---------------------------------------------------------------------------------------------- tokens


class TokenOut(BaseModel):
    id: str
    kind: str
    agent_id: str | None
    agent_email: str | None
    name: str | None
    hint: str  # the token's last characters
    created_at: datetime
    revoked_at: datetime | None


class IssuedToken(TokenOut):
    token: str  # shown this once; only its hash is kept


class TokenIn(_In):
    agent: str | None = Field(default=None, description="the agent's email or id")
    integration: str | None = Field(default=None, description="the name of the system the token is for")


def _token_out(row: ApiToken, email: str | None) -> TokenOut:
    return TokenOut(
        id=row.id, kind=row.kind, agent_id=row.agent_id, agent_email=email, name=row.name, hint=row.hint,
        created_at=row.created_at, revoked_at=row.revoked_at,
    )


def _email(session: SessionDep, row: ApiToken) -> str | None:
    return admin.find_agent(session, row.agent_id).email if row.agent_id else None


@router.get("/tokens")
def list_tokens(session: SessionDep) -> list[TokenOut]:
    return [_token_out(info.token, info.agent_email) for info in admin.list_tokens(session)]


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def issue_token(session: SessionDep, body: TokenIn) -> IssuedToken:
    with _refusals():
        row, token = admin.issue(session, agent=body.agent, integration=body.integration)
        return IssuedToken(**_token_out(row, _email(session, row)).model_dump(), token=token)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(session: SessionDep, token_id: str) -> TokenOut:
    with _refusals():
        row = admin.revoke_token(session, token_id)
        return _token_out(row, _email(session, row))
