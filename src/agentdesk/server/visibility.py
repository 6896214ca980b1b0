"""Who may see what (DESIGN §4): an agent sees their teams' conversations and those conversations' customers.

The one place this rule lives; pull, bootstrap, push, presence and the record reads all ask here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import Session, select

from agentdesk.server.models import Conversation, Customer


# As correlated EXISTS filters, so a page of rows or changes probes the conversation index per row instead of
# reading (and sorting) every conversation or interaction of the caller's teams first.


def customer_visible(customer_id: sa.ColumnElement, teams: Sequence[str]) -> sa.ColumnElement[bool]:
    """A filter: the customer in `customer_id` has a conversation in one of `teams`."""
    return sa.exists().where(Conversation.customer_id == customer_id, Conversation.team_id.in_(teams))  # type: ignore[attr-defined]


def conversation_visible(conversation_id: sa.ColumnElement, teams: Sequence[str]) -> sa.ColumnElement[bool]:
    """A filter: the conversation in `conversation_id` belongs to one of `teams`."""
    return sa.exists().where(Conversation.id == conversation_id, Conversation.team_id.in_(teams))  # type: ignore[attr-defined]


def teams_seeing(session: Session, customer_id: str) -> set[str]:
    """The teams that may see a customer."""
    return set(session.exec(select(Conversation.team_id).where(Conversation.customer_id == customer_id)))


def visible_conversation(session: Session, teams: Sequence[str], conversation_id: str) -> Conversation | None:
    conversation = session.get(Conversation, conversation_id)
    return conversation if conversation is not None and conversation.team_id in teams else None


def visible_customer(session: Session, teams: Sequence[str], customer_id: str, **get: object) -> Customer | None:
    customer = session.get(Customer, customer_id, **get)  # type: ignore[arg-type]
    return customer if customer is not None and teams_seeing(session, customer_id) & set(teams) else None
