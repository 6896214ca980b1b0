"""SLA clocks on conversations (filled in by the SLA work; the hooks below are where domain writes call it)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from agentdesk.server.models import Conversation


def on_inbound(session: Session, conversation: Conversation, at: datetime) -> None:
    """A customer message arrived: start the first- or next-response clock."""


def on_agent_reply(session: Session, conversation: Conversation, at: datetime) -> None:
    """An agent answered the customer (not a note): stop the response clock."""


def on_status(session: Session, conversation: Conversation, at: datetime) -> None:
    """Status or priority changed: closing stops every clock, reopening or a new priority recomputes."""
