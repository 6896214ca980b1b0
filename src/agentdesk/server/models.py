"""Server tables: the source of truth (DESIGN §4).

Ids are 32-hex strings so a client can create an entity offline (a reply) under its final id.
Datetimes are aware UTC on both SQLite and PostgreSQL (see `UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from agentdesk.domain.clock import utcnow


class UTCDateTime(sa.types.TypeDecorator):
    """Stores aware UTC; SQLite hands back naive values, which are UTC by construction."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _when(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class Team(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(unique=True)


class Agent(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    name: str
    email: str = Field(unique=True)
    role: str = "agent"  # agent | supervisor | admin
    created_at: datetime = _when(default_factory=utcnow)


class AgentTeam(SQLModel, table=True):
    __tablename__ = "agent_team"
    __table_args__ = (sa.UniqueConstraint("agent_id", "team_id"),)
    id: str = Field(primary_key=True, max_length=32)
    agent_id: str = Field(foreign_key="agent.id", index=True)
    team_id: str = Field(foreign_key="team.id", index=True)


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    id: str = Field(primary_key=True, max_length=32)
    agent_id: str = Field(foreign_key="agent.id", index=True)
    token_hash: str = Field(unique=True)  # sha256 of the token; the token itself is shown once
    created_at: datetime = _when(default_factory=utcnow)
    revoked_at: datetime | None = _when(default=None)


class Customer(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    display_name: str
    first_name: str = ""
    tags: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    notes: str = ""
    language: str = "en"
    merged_into: str | None = None
    created_at: datetime = _when(default_factory=utcnow)
    updated_at: datetime = _when(default_factory=utcnow)


class Identity(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("kind", "address"),)
    id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(foreign_key="customer.id", index=True)
    kind: str  # phone | email | chat | whatsapp
    address: str


class Conversation(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(foreign_key="customer.id", index=True)
    channel: str
    status: str = "open"  # open | pending | snoozed | closed
    priority: str = "normal"  # low | normal | high | urgent
    assignee_id: str | None = Field(default=None, foreign_key="agent.id", index=True)
    team_id: str = Field(foreign_key="team.id", index=True)
    subject: str | None = None
    sla_due: datetime | None = _when(default=None)
    snooze_until: datetime | None = _when(default=None)
    created_at: datetime = _when(default_factory=utcnow)
    updated_at: datetime = _when(default_factory=utcnow)
    last_message_at: datetime = _when(default_factory=utcnow)
    version: int = 1


class Interaction(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    conversation_id: str = Field(foreign_key="conversation.id", index=True)
    customer_id: str = Field(foreign_key="customer.id", index=True)
    channel: str
    direction: str  # inbound | outbound | note
    author_id: str | None = Field(default=None, foreign_key="agent.id")
    text: str = ""
    subject: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    delivery_status: str | None = None  # queued | sent | delivered | failed (outbound only)
    occurred_at: datetime = _when(default_factory=utcnow)


class Change(SQLModel, table=True):
    """The change log: written in the same transaction as the domain write it describes."""

    seq: int | None = Field(default=None, primary_key=True)
    entity: str
    entity_id: str
    op: str  # upsert | delete
    data: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    team_id: str | None = Field(default=None, index=True)  # visibility scope; None = everyone
    created_at: datetime = _when(default_factory=utcnow)


class Mutation(SQLModel, table=True):
    """Every pushed mutation id, so each is applied at most once."""

    id: str = Field(primary_key=True, max_length=64)
    agent_id: str = Field(foreign_key="agent.id")
    kind: str
    status: str  # applied | rejected
    reason: str | None = None
    created_at: datetime = _when(default_factory=utcnow)
