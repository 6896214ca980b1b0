"""The change log: every domain write records its change in the same session, hence transaction."""

from __future__ import annotations

from sqlmodel import Session, SQLModel

from agentdesk.server.models import Change, Conversation, Interaction
from agentdesk.server.wire import ENTITY_OF, wire_row


def scope_team(obj: SQLModel, session: Session) -> str | None:
    """The team whose agents may see this row; None means every agent."""
    if isinstance(obj, Conversation):
        return obj.team_id
    if isinstance(obj, Interaction):
        conversation = session.get(Conversation, obj.conversation_id)
        return conversation.team_id if conversation else None
    return None


def record_upsert(session: Session, obj: SQLModel) -> None:
    """Add `obj` and its change-log entry to the session (committed together by the caller)."""
    session.add(obj)
    session.add(
        Change(
            entity=ENTITY_OF[type(obj)],
            entity_id=obj.id,  # type: ignore[attr-defined]
            op="upsert",
            data=wire_row(obj),
            team_id=scope_team(obj, session),
        )
    )
