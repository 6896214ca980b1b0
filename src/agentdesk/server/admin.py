"""Admin operations, one function each, shared by the `agentdesk admin` commands and the admin API.

Each write commits, and records agent, team and membership changes in the change log so desks see them.
A refusal raises AdminError (NotFound, Conflict) with a message for the admin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, select

from agentdesk.domain.business_hours import Calendar
from agentdesk.domain.clock import utcnow
from agentdesk.server.auth import new_id, new_token
from agentdesk.server.changes import record_delete, record_upsert
from agentdesk.server.models import Agent, AgentTeam, ApiToken, Team
from agentdesk.server.wire import ENTITY_OF

ROLES = ("agent", "supervisor", "admin")
CHANNELS = ("email", "sms", "whatsapp", "chat", "phone")
TEAM_ROUTING = ("round_robin", "queue")


class AdminError(Exception):
    """A refused admin operation; the message is for the admin. `status` is its HTTP status in the admin API."""

    status = 400


class NotFound(AdminError):
    """The agent, team or token named does not exist."""

    status = 404


class Conflict(AdminError):
    """The operation clashes with the current state (a duplicate, an already revoked token, the last admin)."""

    status = 409


# ---------------------------------------------------------------------------------------------- lookups


def find_agent(session: Session, ref: str) -> Agent:
    """An agent by id or by email (any case)."""
    ref = ref.strip()
    agent = session.get(Agent, ref) or session.exec(select(Agent).where(Agent.email == ref.lower())).first()
    if agent is None:
        raise NotFound(f"No agent with email or id {ref!r}; see: agentdesk admin agent list")
    return agent


def find_team(session: Session, ref: str) -> Team:
    """A team by id or by name."""
    ref = ref.strip()
    team = session.get(Team, ref) or session.exec(select(Team).where(Team.name == ref)).first()
    if team is None:
        raise NotFound(f"No team named {ref!r}; add it first with: agentdesk admin team add {ref!r}")
    return team


def _save(session: Session, *rows: SQLModel) -> None:
    """Record each row's change (desks see agents and teams) and commit, in one transaction."""
    for row in rows:
        record_upsert(session, row)
    session.commit()


# ---------------------------------------------------------------------------------------------- teams


@dataclass(frozen=True)
class TeamInfo:
    team: Team
    members: int  # agents in the team, enabled or not


def list_teams(session: Session) -> list[TeamInfo]:
    counts = dict(session.execute(sa.select(AgentTeam.team_id, sa.func.count()).group_by(AgentTeam.team_id)).all())
    return [TeamInfo(team, counts.get(team.id, 0)) for team in session.exec(select(Team).order_by(Team.name))]


def team_info(session: Session, ref: str) -> TeamInfo:
    team = find_team(session, ref)
    members = session.execute(sa.select(sa.func.count()).where(AgentTeam.team_id == team.id)).scalar_one()
    return TeamInfo(team, members)


def _check_routing(routing: str) -> str:
    if routing not in TEAM_ROUTING:
        raise AdminError(f"Unknown routing {routing!r}; expected one of: {', '.join(TEAM_ROUTING)}.")
    return routing


def _check_timezone(timezone: str) -> str:
    try:
        Calendar.always(timezone)
    except ValueError:
        raise AdminError(f"Unknown time zone {timezone!r}; expected an IANA name such as 'Europe/London'.") from None
    return timezone


def add_team(session: Session, name: str, *, routing: str = "round_robin", timezone: str = "UTC") -> Team:
    name = name.strip()
    if not name:
        raise AdminError("A team needs a name.")
    if session.exec(select(Team).where(Team.name == name)).first():
        raise Conflict(f"Team {name!r} already exists.")
    team = Team(id=new_id(), name=name, routing=_check_routing(routing), timezone=_check_timezone(timezone))
    _save(session, team)
    return team


def set_team_active(session: Session, ref: str, active: bool) -> Team:
    """Disable (no new conversations are routed to it) or enable a team."""
    team = find_team(session, ref)
    if team.active == active:
        raise Conflict(f"Team {team.name!r} is already {'enabled' if active else 'disabled'}.")
    team.active = active
    _save(session, team)
    return team


def disable_team(session: Session, ref: str) -> Team:
    return set_team_active(session, ref, False)


def enable_team(session: Session, ref: str) -> Team:
    return set_team_active(session, ref, True)


# ---------------------------------------------------------------------------------------------- agents


@dataclass(frozen=True)
class AgentInfo:
    agent: Agent
    teams: list[str]  # team names


def list_agents(session: Session) -> list[AgentInfo]:
    names = dict(session.exec(select(Team.id, Team.name)).all())
    teams: dict[str, list[str]] = {}
    for membership in session.exec(select(AgentTeam)):
        teams.setdefault(membership.agent_id, []).append(names[membership.team_id])
    agents = session.exec(select(Agent).order_by(Agent.email))
    return [AgentInfo(agent, sorted(teams.get(agent.id, []))) for agent in agents]


def agent_info(session: Session, ref: str) -> AgentInfo:
    agent = find_agent(session, ref)
    names = session.exec(select(Team.name).join(AgentTeam, AgentTeam.team_id == Team.id).where(AgentTeam.agent_id == agent.id))
    return AgentInfo(agent, sorted(names))


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise AdminError(f"Unknown role {role!r}; expected one of: {', '.join(ROLES)}.")
    return role


def _check_skills(skills: Iterable[str]) -> list[str]:
    out: list[str] = []
    for skill in skills:
        skill = skill.strip().lower()
        if not skill or any(ch.isspace() or ch == "," for ch in skill):
            raise AdminError(f"A skill is one word such as 'spanish' or 'billing', got {skill!r}.")
        if skill not in out:
            out.append(skill)
    return out


def _check_capacity(capacity: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for channel, limit in capacity.items():
        if channel not in (*CHANNELS, "*"):
            raise AdminError(f"Unknown channel {channel!r} in capacity; expected one of: {', '.join(CHANNELS)}, or * for any.")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 1000:
            raise AdminError(f"Capacity for {channel} must be a whole number from 0 to 1000, got {limit!r}.")
        out[channel] = limit
    return out


def add_agent(
    session: Session,
    name: str,
    email: str,
    team: str | None = None,
    role: str = "agent",
    *,
    teams: Iterable[str] = (),
    skills: Iterable[str] = (),
    capacity: Mapping[str, int] | None = None,
) -> Agent:
    email = email.strip().lower()
    name = name.strip()
    _check_role(role)
    if not name:
        raise AdminError("An agent needs a name.")
    if "@" not in email:
        raise AdminError(f"{email!r} is not an email address.")
    if session.exec(select(Agent).where(Agent.email == email)).first():
        raise Conflict(f"An agent with email {email} already exists.")
    team_rows = {row.id: row for row in (find_team(session, ref) for ref in [*([team] if team else []), *teams])}
    agent = Agent(id=new_id(), name=name, email=email, role=role, skills=_check_skills(skills),
                  capacity=_check_capacity(capacity or {}))
    record_upsert(session, agent)
    if team_rows:
        session.flush()
        for team_id in team_rows:
            record_upsert(session, AgentTeam(id=new_id(), agent_id=agent.id, team_id=team_id))
    session.commit()
    return agent


def _refuse_losing_last_admin(session: Session, agent: Agent, what: str) -> None:
    if agent.role != "admin" or not agent.active:
        return
    others = session.exec(select(Agent.id).where(Agent.role == "admin", Agent.active, Agent.id != agent.id)).first()
    if others is None:
        raise Conflict(f"{agent.email} is the last enabled admin; make another agent admin before you {what}.")


def set_agent_active(session: Session, ref: str, active: bool) -> Agent:
    """Disable (their tokens stop working, routing skips them) or enable an agent."""
    agent = find_agent(session, ref)
    if agent.active == active:
        raise Conflict(f"Agent {agent.email} is already {'enabled' if active else 'disabled'}.")
    if not active:
        _refuse_losing_last_admin(session, agent, "disable them")
        # Offline from now: routing hands their unanswered conversations back after its grace time.
        agent.presence, agent.presence_at = "offline", utcnow()
    agent.active = active
    _save(session, agent)
    return agent


def disable_agent(session: Session, ref: str) -> Agent:
    return set_agent_active(session, ref, False)


def enable_agent(session: Session, ref: str) -> Agent:
    return set_agent_active(session, ref, True)


def set_agent_role(session: Session, ref: str, role: str) -> Agent:
    agent = find_agent(session, ref)
    _check_role(role)
    if role != "admin":
        _refuse_losing_last_admin(session, agent, "change their role")
    agent.role = role
    _save(session, agent)
    return agent


def set_agent_skills(session: Session, ref: str, skills: Iterable[str]) -> Agent:
    """Replace the agent's skills (an empty list clears them)."""
    agent = find_agent(session, ref)
    agent.skills = _check_skills(skills)
    _save(session, agent)
    return agent


def set_agent_capacity(session: Session, ref: str, capacity: Mapping[str, int]) -> Agent:
    """Replace the agent's open-conversation limits per channel ("*": any channel not named)."""
    agent = find_agent(session, ref)
    agent.capacity = _check_capacity(capacity)
    _save(session, agent)
    return agent


def add_agent_to_team(session: Session, agent_ref: str, team_ref: str) -> AgentTeam:
    agent, team = find_agent(session, agent_ref), find_team(session, team_ref)
    exists = session.exec(select(AgentTeam).where(AgentTeam.agent_id == agent.id, AgentTeam.team_id == team.id)).first()
    if exists is not None:
        raise Conflict(f"{agent.email} is already in team {team.name!r}.")
    membership = AgentTeam(id=new_id(), agent_id=agent.id, team_id=team.id)
    _save(session, membership)
    return membership


def remove_agent_from_team(session: Session, agent_ref: str, team_ref: str) -> None:
    agent, team = find_agent(session, agent_ref), find_team(session, team_ref)
    membership = session.exec(select(AgentTeam).where(AgentTeam.agent_id == agent.id, AgentTeam.team_id == team.id)).first()
    if membership is None:
        raise NotFound(f"{agent.email} is not in team {team.name!r}.")
    record_delete(session, ENTITY_OF[AgentTeam], membership.id)
    session.delete(membership)
    session.commit()


# ---------------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenInfo:
    token: ApiToken  # never shows the hash: callers print the fields they need
    agent_email: str | None


def list_tokens(session: Session) -> list[TokenInfo]:
    rows = session.exec(
        select(ApiToken, Agent.email).join(Agent, Agent.id == ApiToken.agent_id, isouter=True)  # type: ignore[arg-type]
        .order_by(ApiToken.created_at, ApiToken.id)  # type: ignore[arg-type]
    )
    return [TokenInfo(token, email) for token, email in rows]


def issue(session: Session, *, agent: str | None = None, integration: str | None = None) -> tuple[ApiToken, str]:
    """A new token for an agent (by email or id) or an integration (by name): the row and the token in clear."""
    if (agent is None) == (integration is None):
        raise AdminError("Issue a token either for an agent or for an integration.")
    if agent is not None:
        row = find_agent(session, agent)
        if not row.active:
            raise Conflict(f"Agent {row.email} is disabled; enable them first (agentdesk admin agent enable {row.email}).")
        token_row, token = new_token(session, kind="agent", agent_id=row.id)
    else:
        name = (integration or "").strip()
        if not name or len(name) > 100:
            raise AdminError("An integration token needs a name of 1 to 100 characters (the system it is for).")
        token_row, token = new_token(session, kind="integration", name=name)
    session.commit()
    return token_row, token


def issue_agent_token(session: Session, email: str) -> str:
    return issue(session, agent=email)[1]


def issue_integration(session: Session, name: str) -> str:
    return issue(session, integration=name)[1]


def find_token(session: Session, ref: str) -> ApiToken:
    """A token by id, or by a unique prefix of at least 6 characters of its id."""
    ref = ref.strip().lower()
    row = session.get(ApiToken, ref)
    if row is None and len(ref) >= 6:
        matches = session.exec(select(ApiToken).where(ApiToken.id.startswith(ref))).all()  # type: ignore[attr-defined]
        if len(matches) > 1:
            raise AdminError(f"{len(matches)} tokens have ids starting {ref!r}; give more of the id.")
        row = matches[0] if matches else None
    if row is None:
        raise NotFound(f"No token with id {ref!r}; see: agentdesk admin token list")
    return row


def revoke_token(session: Session, ref: str) -> ApiToken:
    """Revoke a token at once; the row stays, for the record."""
    row = find_token(session, ref)
    if row.revoked_at is not None:
        raise Conflict(f"Token {row.id} was already revoked.")
    row.revoked_at = utcnow()
    session.add(row)
    session.commit()
    return row
