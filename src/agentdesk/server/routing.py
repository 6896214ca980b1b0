"""Routing: a new inbound conversation goes to a team by rule, then to an agent by the team's policy.

Policies: "round_robin" hands the conversation to the next available agent of the team (in a fixed order,
after the last one served) who has free capacity on its channel; "queue" leaves it in the team's queue.
When an agent goes away or offline, their unanswered conversations return to the queue after a grace time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from agentdesk.server.changes import begin_write, record_upsert
from agentdesk.server.models import Agent, AgentTeam, Conversation, RoutingRule, Team

DEFAULT_CAPACITY = 5  # open conversations per channel for an agent without a declared capacity
WORKING = ("open", "pending")


class NoTeam(Exception):
    """There is no active team to take new conversations."""


def choose_team(session: Session, channel: str, text: str) -> Team:
    """The team of the first matching rule by position, else the first active team by name."""
    haystack = text.lower()
    for rule in session.exec(select(RoutingRule).order_by(RoutingRule.position)):  # type: ignore[arg-type]
        if rule.channel not in (None, channel) or (rule.keyword and rule.keyword.lower() not in haystack):
            continue
        team = session.get(Team, rule.team_id)
        if team is not None and team.active:
            return team
    team = session.exec(select(Team).where(Team.active).order_by(Team.name)).first()  # type: ignore[arg-type]
    if team is None:
        raise NoTeam("No active team to route new conversations to; add one with: agentdesk admin team add NAME")
    return team


def _load(session: Session, agent_id: str, channel: str) -> int:
    return session.execute(
        sa.select(sa.func.count()).where(
            Conversation.assignee_id == agent_id,
            Conversation.channel == channel,
            Conversation.status.in_(WORKING),  # type: ignore[attr-defined]
        )
    ).scalar_one()


def choose_agent(session: Session, team: Team, channel: str) -> Agent | None:
    """Round robin among the team's available agents with free capacity on `channel` (None: queue it)."""
    if team.routing != "round_robin":
        return None
    agents = session.exec(
        select(Agent)
        .join(AgentTeam, AgentTeam.agent_id == Agent.id)
        .where(AgentTeam.team_id == team.id, Agent.active, Agent.presence == "available")
        .order_by(Agent.id)  # type: ignore[arg-type]
    ).all()
    after = [a for a in agents if team.last_assigned_id is None or a.id > team.last_assigned_id]
    for agent in after + [a for a in agents if a not in after]:
        if _load(session, agent.id, channel) < agent.capacity.get(channel, agent.capacity.get("*", DEFAULT_CAPACITY)):
            team.last_assigned_id = agent.id  # internal bookkeeping, not a change desks need to see
            session.add(team)
            return agent
    return None


def return_unanswered(session: Session, now: datetime, grace: timedelta) -> int:
    """Unassign the waiting conversations of agents away or offline for longer than `grace`."""
    begin_write(session)
    absent = select(Agent.id).where(
        Agent.presence != "available", Agent.presence_at <= now - grace  # type: ignore[operator]
    )
    waiting = session.exec(
        select(Conversation).where(
            Conversation.assignee_id.in_(absent),  # type: ignore[union-attr]
            Conversation.status == "open",
            Conversation.awaiting_since.is_not(None),  # type: ignore[union-attr]
        )
    ).all()
    for conversation in waiting:
        conversation.assignee_id = None
        conversation.version += 1
        conversation.updated_at = now
        record_upsert(session, conversation)
    session.commit()
    return len(waiting)
