"""Admin operations, shared by the `agentdesk admin` commands (and later an admin API)."""

from __future__ import annotations

from sqlmodel import Session, select

from agentdesk.server.auth import issue_token, new_id
from agentdesk.server.changes import record_upsert
from agentdesk.server.models import Agent, AgentTeam, Team

ROLES = ("agent", "supervisor", "admin")


class AdminError(Exception):
    """A refused admin operation; the message is for the admin."""


def add_team(session: Session, name: str) -> Team:
    name = name.strip()
    if not name:
        raise AdminError("A team needs a name.")
    if session.exec(select(Team).where(Team.name == name)).first():
        raise AdminError(f"Team {name!r} already exists.")
    team = Team(id=new_id(), name=name)
    record_upsert(session, team)
    session.commit()
    return team


def add_agent(session: Session, name: str, email: str, team: str | None = None, role: str = "agent") -> Agent:
    email = email.strip().lower()
    if role not in ROLES:
        raise AdminError(f"Unknown role {role!r}; expected one of: {', '.join(ROLES)}.")
    if "@" not in email:
        raise AdminError(f"{email!r} is not an email address.")
    if session.exec(select(Agent).where(Agent.email == email)).first():
        raise AdminError(f"An agent with email {email} already exists.")
    team_row = None
    if team is not None:
        team_row = session.exec(select(Team).where(Team.name == team)).first()
        if team_row is None:
            raise AdminError(f"No team named {team!r}; add it first with: agentdesk admin team add {team!r}")
    agent = Agent(id=new_id(), name=name.strip(), email=email, role=role)
    record_upsert(session, agent)
    if team_row is not None:
        session.flush()
        record_upsert(session, AgentTeam(id=new_id(), agent_id=agent.id, team_id=team_row.id))
    session.commit()
    return agent


def issue_agent_token(session: Session, email: str) -> str:
    agent = session.exec(select(Agent).where(Agent.email == email.strip().lower())).first()
    if agent is None:
        raise AdminError(f"No agent with email {email}.")
    token = issue_token(session, agent)
    session.commit()
    return token
