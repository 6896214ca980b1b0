"""SLA clocks on conversations: first-response, next-response and resolution targets in business time.

Targets come from the most specific `SlaPolicy` for the conversation's channel and priority; time counts
in the team's business calendar (time zone, weekly hours, holidays; a team without declared hours keeps
office hours). The running targets are kept on the conversation, and the earliest of them in
`sla_due`, so the queue sorts and colours on one column. A missed target is recorded once in `sla_breach`.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from agentdesk.domain.business_hours import Calendar, add_business_time
from agentdesk.server.auth import new_id
from agentdesk.server.config_cache import cached, teams
from agentdesk.server.models import Conversation, SlaBreach, SlaPolicy, Team


def calendar(team: Team | None) -> Calendar:
    """The team's business calendar; a team without declared hours keeps office hours (Mon-Fri 09:00-17:00)."""
    if team is None:
        return Calendar()
    if not team.hours:
        return Calendar(team.timezone, holidays=frozenset(date.fromisoformat(day) for day in team.holidays))
    return Calendar.from_config(team.timezone, team.hours, team.holidays)


def team_calendar(session: Session, team_id: str | None) -> Calendar:
    """`calendar` of the team with this id, cached (server/config_cache.py): parsing hours per message adds up."""
    def load() -> Calendar:
        return calendar(teams(session).get(team_id) if team_id else None)

    return cached(session.get_bind(), ("calendar", team_id), load)


def _policies(session: Session) -> list[SlaPolicy]:
    """Every policy (a handful of rows), cached (server/config_cache.py); detached copies, read only."""
    def load() -> list[SlaPolicy]:
        return [SlaPolicy(**row) for row in session.execute(sa.select(SlaPolicy.__table__)).mappings()]  # type: ignore[attr-defined]

    return cached(session.get_bind(), "sla_policies", load)


def policy_for(session: Session, channel: str, priority: str) -> SlaPolicy | None:
    """The most specific policy: channel and priority, then channel, then priority, then the catch-all."""
    candidates = [p for p in _policies(session) if p.channel in (channel, None) and p.priority in (priority, None)]
    return max(candidates, key=lambda p: (p.channel is not None, p.priority is not None), default=None)


def _due(session: Session, conversation: Conversation, target: str, start: datetime | None) -> datetime | None:
    policy = policy_for(session, conversation.channel, conversation.priority)
    minutes = getattr(policy, f"{target}_minutes", None) if policy else None
    if minutes is None or start is None:
        return None
    return add_business_time(team_calendar(session, conversation.team_id), start, minutes)


def _refresh(conversation: Conversation) -> None:
    """sla_due: the earliest target still running (none once closed or snoozed)."""
    running = [] if conversation.status in ("closed", "snoozed") else [
        conversation.first_response_due if conversation.first_response_at is None else None,
        conversation.next_response_due if conversation.awaiting_since is not None else None,
        conversation.resolution_due,
    ]
    conversation.sla_due = min((due for due in running if due is not None), default=None)


def _recompute(session: Session, conversation: Conversation) -> None:
    """Every target from its own start: after a new policy, priority or team."""
    conversation.first_response_due = _due(session, conversation, "first_response", conversation.created_at)
    answered = conversation.first_response_at is not None
    conversation.next_response_due = _due(session, conversation, "next_response", conversation.awaiting_since) if answered else None
    conversation.resolution_due = _due(session, conversation, "resolution", conversation.created_at)
    _refresh(conversation)


def on_inbound(session: Session, conversation: Conversation, at: datetime) -> None:
    """A customer message arrived: start the first-response clock (new conversation) or the next-response one."""
    if conversation.first_response_due is None and conversation.resolution_due is None:
        _recompute(session, conversation)  # a new conversation, or one that had no policy when it began
    if conversation.awaiting_since is None:
        conversation.awaiting_since = at
        if conversation.first_response_at is not None:
            conversation.next_response_due = _due(session, conversation, "next_response", at)
    _refresh(conversation)


def on_agent_reply(session: Session, conversation: Conversation, at: datetime) -> None:
    """An agent answered the customer (not a note): stop the response clock, recording a late answer."""
    if conversation.first_response_at is None:
        _breach_if_late(session, conversation, "first_response", conversation.first_response_due, at)
        conversation.first_response_at = at
    elif conversation.awaiting_since is not None:
        _breach_if_late(session, conversation, "next_response", conversation.next_response_due, at)
    conversation.awaiting_since = None
    conversation.next_response_due = None
    _refresh(conversation)


def on_status(session: Session, conversation: Conversation, at: datetime) -> None:
    """Status, priority or team changed: closing stops every clock; anything else recomputes the targets."""
    if conversation.status == "closed":
        _breach_if_late(session, conversation, "resolution", conversation.resolution_due, at)
        _refresh(conversation)
    else:
        _recompute(session, conversation)


def _breach_if_late(session: Session, conversation: Conversation, kind: str, due: datetime | None, at: datetime) -> None:
    if due is not None and at > due:
        record_breach(session, conversation, kind, due)


def record_breach(session: Session, conversation: Conversation, kind: str, due: datetime) -> None:
    """Record a missed target once (the sweep and a late answer may both notice it)."""
    exists = session.exec(
        select(SlaBreach.id).where(
            SlaBreach.conversation_id == conversation.id, SlaBreach.kind == kind, SlaBreach.due_at == due
        )
    ).first()
    if exists is None:
        session.add(SlaBreach(id=new_id(), conversation_id=conversation.id, team_id=conversation.team_id, kind=kind, due_at=due))


def sweep_breaches(session: Session, now: datetime) -> int:
    """Record every running target that has passed (run periodically); returns how many were new."""
    recorded = 0
    overdue = session.exec(select(Conversation).where(Conversation.sla_due <= now)).all()  # type: ignore[operator]
    for conversation in overdue:
        for kind, due in (
            ("first_response", conversation.first_response_due if conversation.first_response_at is None else None),
            ("next_response", conversation.next_response_due if conversation.awaiting_since is not None else None),
            ("resolution", conversation.resolution_due),
        ):
            if due is not None and due <= now:
                before = len(session.new)
                record_breach(session, conversation, kind, due)
                recorded += len(session.new) - before
    session.commit()
    return recorded

