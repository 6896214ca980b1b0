"""Push: intent mutations from clients, each applied at most once by its client mutation id."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from agentdesk.domain.clock import utcnow
from agentdesk.server.changes import record_upsert
from agentdesk.server.models import Agent, Conversation, Interaction, Mutation

_ID = re.compile(r"^[0-9a-f]{32}$")


class Rejected(Exception):
    """A mutation that cannot apply; its message is shown to the agent."""


class ReplyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_id: str
    interaction_id: str = Field(pattern=_ID.pattern)  # the client's id for the new interaction
    channel: Literal["phone", "email", "chat", "sms", "whatsapp"]
    text: str = Field(min_length=1, max_length=100_000)
    subject: str | None = Field(default=None, max_length=1000)


class MutationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=8, max_length=64)
    kind: str
    args: dict[str, Any]


class MutationResult(BaseModel):
    id: str
    status: Literal["applied", "duplicate", "rejected"]
    reason: str | None = None


def _conversation(session: Session, agent_teams: list[str], conversation_id: str) -> Conversation:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.team_id not in agent_teams:
        raise Rejected("That conversation no longer exists or is not visible to you.")
    return conversation


def _add_interaction(session: Session, agent: Agent, teams: list[str], args: ReplyArgs, direction: str) -> None:
    conversation = _conversation(session, teams, args.conversation_id)
    if session.get(Interaction, args.interaction_id) is not None:
        raise Rejected("A message with this id already exists.")
    now = utcnow()
    record_upsert(
        session,
        Interaction(
            id=args.interaction_id,
            conversation_id=conversation.id,
            customer_id=conversation.customer_id,
            channel=args.channel,
            direction=direction,
            author_id=agent.id,
            text=args.text,
            subject=args.subject,
            # No channel adapter sends yet: an accepted reply counts as sent (the channels issue adds
            # the outbound queue with provider ids and delivery callbacks).
            delivery_status="sent" if direction == "outbound" else None,
            occurred_at=now,
        ),
    )
    conversation.last_message_at = now
    conversation.updated_at = now
    conversation.version += 1
    record_upsert(session, conversation)


def apply_reply(session: Session, agent: Agent, teams: list[str], args: dict[str, Any]) -> None:
    _add_interaction(session, agent, teams, ReplyArgs.model_validate(args), "outbound")


def apply_note(session: Session, agent: Agent, teams: list[str], args: dict[str, Any]) -> None:
    _add_interaction(session, agent, teams, ReplyArgs.model_validate(args), "note")


APPLIERS: dict[str, Callable[[Session, Agent, list[str], dict[str, Any]], None]] = {
    "reply": apply_reply,
    "note": apply_note,
}


def _repeat(mutation: Mutation) -> MutationResult:
    """A mutation id seen before: applied ones are duplicates, rejected ones stay rejected (same reason)."""
    if mutation.status == "rejected":
        return MutationResult(id=mutation.id, status="rejected", reason=mutation.reason)
    return MutationResult(id=mutation.id, status="duplicate")


def apply(session_factory: Callable[[], Session], agent: Agent, teams: list[str], m: MutationIn) -> MutationResult:
    """Apply one mutation in its own transaction, at most once per mutation id."""
    with session_factory() as session:
        if (seen := session.get(Mutation, m.id)) is not None:
            return _repeat(seen)
        status, reason = "applied", None
        try:
            applier = APPLIERS.get(m.kind)
            if applier is None:
                raise Rejected(f"Unknown mutation kind {m.kind!r}.")
            applier(session, agent, teams, m.args)
        except Rejected as exc:
            session.rollback()
            status, reason = "rejected", str(exc)
        except ValidationError as exc:
            session.rollback()
            status, reason = "rejected", f"Invalid {m.kind}: {exc.errors()[0]['msg']}"
        session.add(Mutation(id=m.id, agent_id=agent.id, kind=m.kind, status=status, reason=reason))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            if (seen := session.get(Mutation, m.id)) is not None:  # the same id raced in on another request
                return _repeat(seen)
            raise
        return MutationResult(id=m.id, status=status, reason=reason)  # type: ignore[arg-type]
