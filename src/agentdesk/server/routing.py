"""Routing: a new inbound conversation goes to a team by rule, then to an agent by the team's policy.

Policies: "round_robin" hands the conversation to the next available agent of the team (in a fixed order,
after the last one served) who has free capacity on its channel; "queue" leaves it in the team's queue.
When an agent goes away or offline, their unanswered conversations return to the queue after a grace time.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from agentdesk.server.changes import begin_write, record_upsert
from agentdesk.server.config_cache import cached, teams
from agentdesk.server.models import Agent, AgentTeam, Conversation, RoutingRule, Team

DEFAULT_CAPACITY = 5  # open conversations per channel for an agent without a declared capacity
WORKING = ("open", "pending")


class NoTeam(Exception):
    """There is no active team to take new conversations."""


def choose_team(session: Session, channel: str, text: str) -> Team:
    """The team of the first matching rule by position, else the first active team by name (a cached,
    read-only copy: see server/config_cache.py)."""
    haystack = text.lower()
    known = teams(session)
    for rule in _rules(session):
        if rule.channel not in (None, channel) or (rule.keyword and rule.keyword.lower() not in haystack):
            continue
        team = known.get(rule.team_id)
        if team is not None and team.active:
            return team
    team = next((t for t in known.values() if t.active), None)  # in order of names
    if team is None:
        raise NoTeam("No active team to route new conversations to; add one with: agentdesk admin team add NAME")
    return team


def _rules(session: Session) -> list[RoutingRule]:
    def load() -> list[RoutingRule]:
        rows = session.execute(sa.select(_RULE).order_by(_RULE.c.position)).mappings()
        return [RoutingRule(**row) for row in rows]

    return cached(session.get_bind(), "routing_rules", load)


_AGENT, _AGENT_TEAM, _CONVERSATION, _RULE, _TEAM = (
    model.__table__ for model in (Agent, AgentTeam, Conversation, RoutingRule, Team)  # type: ignore[attr-defined]
)
# Built once, one query: the team's available agents in round-robin order, each with their open load on the
# channel, and the team's position (the last agent served).
_LOAD = (
    sa.select(sa.func.count())
    .where(
        _CONVERSATION.c.assignee_id == _AGENT.c.id,
        _CONVERSATION.c.channel == sa.bindparam("channel"),
        sa.or_(*(_CONVERSATION.c.status == status for status in WORKING)),
    )
    .correlate(_AGENT)
    .scalar_subquery()
)
_POSITION = sa.select(_TEAM.c.last_assigned_id).where(_TEAM.c.id == sa.bindparam("team_id")).scalar_subquery()
_CANDIDATES = (
    sa.select(_AGENT.c.id, _AGENT.c.capacity, _LOAD.label("load"), _POSITION.label("last"))
    .join(_AGENT_TEAM, _AGENT_TEAM.c.agent_id == _AGENT.c.id)
    .where(_AGENT_TEAM.c.team_id == sa.bindparam("team_id"), _AGENT.c.active, _AGENT.c.presence == "available")
    .order_by(_AGENT.c.id)
)
_MOVE_POSITION = _TEAM.update().where(_TEAM.c.id == sa.bindparam("team_id")).values(last_assigned_id=sa.bindparam("agent_id"))


def choose_agent(session: Session, team: Team, channel: str) -> str | None:
    """The id of the next available agent of the team with free capacity on `channel`, round robin
    (None: leave it in the team's queue). Call inside the writing transaction (changes.begin_write)."""
    rotation = Rotation(session)
    agent_id = rotation.choose(team, channel)
    rotation.finish()
    return agent_id


class Rotation:
    """Round-robin routing for one writing transaction that may route many conversations (an inbound batch).

    Each (team, channel)'s candidates, their loads and the team's position are read once; what this
    transaction assigns or reopens afterwards is counted here. The caller says when it has written its
    conversations (`written`), so a (team, channel) read later, whose counts include them, counts each once.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._candidates: dict[tuple[str, str], list[tuple[str, int, int]]] = {}  # -> (agent, capacity, base load)
        self._positions: dict[str, str | None] = {}  # team -> the last agent served
        self._moved: set[str] = set()  # teams whose position changed
        self._added: Counter[tuple[str, str]] = Counter()  # (agent, channel) -> conversations now working, since start
        self._unwritten: Counter[tuple[str, str]] = Counter()  # the same, not yet in the database

    def choose(self, team: Team, channel: str) -> str | None:
        """The next available agent of the team with free capacity on `channel` (None: the team's queue);
        the conversation is counted in that agent's load."""
        if team.routing != "round_robin":
            return None
        candidates = self._read(team, channel)
        last = self._positions.get(team.id)
        start = next((i for i, (agent_id, _, _) in enumerate(candidates) if last is None or agent_id > last), 0)
        for agent_id, capacity, base in candidates[start:] + candidates[:start]:
            if base + self._added[(agent_id, channel)] < capacity:
                self._positions[team.id] = agent_id
                self._moved.add(team.id)
                self.now_working(agent_id, channel)
                return agent_id
        return None

    def now_working(self, agent_id: str, channel: str) -> None:
        """A conversation of this agent on `channel` now counts in their load (e.g. reopened)."""
        self._added[(agent_id, channel)] += 1
        self._unwritten[(agent_id, channel)] += 1

    def written(self) -> None:
        """The caller's conversations so far are in the database now."""
        self._unwritten.clear()

    def finish(self) -> None:
        """Write the teams' new positions (internal bookkeeping, not a change desks need to see)."""
        connection = self.session.connection()
        for team_id in self._moved:
            connection.execute(_MOVE_POSITION, {"team_id": team_id, "agent_id": self._positions[team_id]})
        self._moved.clear()

    def _read(self, team: Team, channel: str) -> list[tuple[str, int, int]]:
        key = (team.id, channel)
        if key not in self._candidates:
            rows = self.session.connection().execute(_CANDIDATES, {"team_id": team.id, "channel": channel}).all()
            # base + _added = the load now: the database's count, plus what is not written yet, less what
            # was counted here before this read.
            self._candidates[key] = [
                (row.id, row.capacity.get(channel, row.capacity.get("*", DEFAULT_CAPACITY)),
                 row.load + self._unwritten[(row.id, channel)] - self._added[(row.id, channel)])
                for row in rows
            ]
            if rows and team.id not in self._positions:
                self._positions[team.id] = rows[0].last
        return self._candidates[key]


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
