"""Server tables: the source of truth (DESIGN §4).

Ids are 32-hex strings so a client can create an entity offline (a reply) under its final id.
Datetimes are aware UTC on both SQLite and PostgreSQL (see `UTCDateTime`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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


# A log position: 64-bit on PostgreSQL; on SQLite an INTEGER PRIMARY KEY (the rowid), declared
# AUTOINCREMENT so a compacted-away maximum is never handed out again.
SEQ_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LOG_TABLE_ARGS = {"sqlite_autoincrement": True}


class Team(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(unique=True)
    active: bool = True
    routing: str = "round_robin"  # round_robin | queue (see server/routing.py)
    # The team's business calendar for SLA clocks, in the TOML shape of domain.business_hours.Calendar.from_config.
    timezone: str = "UTC"
    hours: dict[str, str] = Field(default_factory=dict, sa_type=sa.JSON)  # {} = Mon-Fri 09:00-17:00
    holidays: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    last_assigned_id: str | None = None  # round-robin position


class Agent(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    name: str
    email: str = Field(unique=True)
    role: str = "agent"  # agent | supervisor | admin
    active: bool = True  # a disabled agent cannot sign in and is never routed to
    skills: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    capacity: dict[str, int] = Field(default_factory=dict, sa_type=sa.JSON)  # channel -> open conversations at once
    presence: str = "offline"  # available | away | offline (routing obeys it)
    presence_at: datetime | None = _when(default=None)
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
    kind: str = "agent"  # agent | integration
    agent_id: str | None = Field(default=None, foreign_key="agent.id", index=True)  # agent tokens
    name: str | None = None  # integration tokens: the system that feeds us (a CRM, an IVR…)
    token_hash: str = Field(unique=True)  # sha256 of the token; the token itself is shown once
    hint: str = ""  # the token's last characters, so an admin can tell tokens apart in a list
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
    # (customer, team): "may this team see this customer" is one index probe (server/visibility.py).
    # (assignee, channel, status): routing counts an agent's open conversations on a channel from the index.
    __table_args__ = (
        sa.Index("ix_conversation_customer_team", "customer_id", "team_id"),
        sa.Index("ix_conversation_assignee_load", "assignee_id", "channel", "status"),
    )
    id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(foreign_key="customer.id")
    channel: str
    status: str = "open"  # open | pending | snoozed | closed
    priority: str = "normal"  # low | normal | high | urgent
    assignee_id: str | None = Field(default=None, foreign_key="agent.id", index=True)
    team_id: str = Field(foreign_key="team.id", index=True)
    subject: str | None = None
    thread_key: str | None = Field(default=None, index=True)  # a chat session id: one session, one conversation
    tags: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    # SLA clocks (server/sla.py): sla_due is the earliest running target, so the queue sorts on one column.
    sla_due: datetime | None = _when(default=None, index=True)
    first_response_due: datetime | None = _when(default=None)
    next_response_due: datetime | None = _when(default=None)
    resolution_due: datetime | None = _when(default=None)
    first_response_at: datetime | None = _when(default=None)
    awaiting_since: datetime | None = _when(default=None)  # oldest inbound message not yet answered
    closed_at: datetime | None = _when(default=None)
    snooze_until: datetime | None = _when(default=None)
    created_at: datetime = _when(default_factory=utcnow)
    updated_at: datetime = _when(default_factory=utcnow)
    last_message_at: datetime = _when(default_factory=utcnow)
    version: int = 1


class Interaction(SQLModel, table=True):
    # external_id: the sender's id (email Message-ID, Twilio MessageSid/CallSid, an integration's id), so a
    # retried delivery is recognised and email replies thread by it.
    __table_args__ = (sa.UniqueConstraint("channel", "external_id"),)
    id: str = Field(primary_key=True, max_length=32)
    conversation_id: str = Field(foreign_key="conversation.id", index=True)
    customer_id: str = Field(foreign_key="customer.id", index=True)
    channel: str
    direction: str  # inbound | outbound | note
    author_id: str | None = Field(default=None, foreign_key="agent.id")
    text: str = ""
    subject: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    delivery_status: str | None = None  # queued | sending | sent | delivered | failed (outbound only; see Delivery)
    external_id: str | None = Field(default=None, max_length=998)
    occurred_at: datetime = _when(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """The server outbox: one row per reply that must leave through a provider (email relay, Twilio), so it
    leaves exactly once. pending -> sending (committed before the request leaves) -> sent (provider id) ->
    delivered | failed. A row found in `sending` after a crash or timeout is reconciled with the provider,
    never blindly sent again (server/delivery.py)."""

    __table_args__ = (sa.UniqueConstraint("channel", "provider_id"),)
    id: str = Field(primary_key=True, max_length=32)
    interaction_id: str = Field(foreign_key="interaction.id", unique=True)
    channel: str  # email | sms | whatsapp | phone (a callback call)
    to_address: str
    status: str = Field(default="pending", index=True)  # pending | sending | sent | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime = _when(default_factory=utcnow)  # pending: not before; sending: reconcile after
    provider_id: str | None = Field(default=None, max_length=998)  # Message-ID, MessageSid, CallSid
    error: str | None = None  # why it failed (shown to the agent), or the last transient error
    created_at: datetime = _when(default_factory=utcnow)
    updated_at: datetime = _when(default_factory=utcnow)


class Change(SQLModel, table=True):
    """The change log: written in the same transaction as the domain write it describes."""

    __table_args__ = _LOG_TABLE_ARGS
    seq: int | None = Field(default=None, primary_key=True, sa_type=SEQ_TYPE)
    entity: str
    entity_id: str
    op: str  # upsert | delete
    data: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    # Visibility scope (server/changes.py): a team's conversations, a customer's rows (seen by the teams
    # that hold one of the customer's conversations), or one agent; all three None = every agent.
    team_id: str | None = Field(default=None, index=True)
    customer_id: str | None = Field(default=None, index=True)
    agent_id: str | None = Field(default=None, index=True)
    # Narrowing the scope to who may see it *now*: an upsert of a conversation or its message is shown only
    # while the conversation is in one of the caller's teams (not to its old team after a transfer); a
    # merge suggestion only to those who may see both customers.
    conversation_id: str | None = None
    other_customer_id: str | None = None
    created_at: datetime = _when(default_factory=utcnow)


class Mutation(SQLModel, table=True):
    """Every pushed mutation id, so each is applied at most once."""

    id: str = Field(primary_key=True, max_length=64)
    agent_id: str = Field(foreign_key="agent.id")
    kind: str
    status: str  # applied | rejected
    reason: str | None = None
    created_at: datetime = _when(default_factory=utcnow)


class SlaBreach(SQLModel, table=True):
    """A missed SLA target, recorded once with the moment it was missed, for reports."""

    __tablename__ = "sla_breach"
    __table_args__ = (sa.UniqueConstraint("conversation_id", "kind", "due_at"),)
    id: str = Field(primary_key=True, max_length=32)
    conversation_id: str = Field(foreign_key="conversation.id", index=True)
    team_id: str = Field(foreign_key="team.id", index=True)
    kind: str  # first_response | next_response | resolution
    due_at: datetime = _when()
    breached_at: datetime = _when(default_factory=utcnow)


class SlaPolicy(SQLModel, table=True):
    """Targets in business minutes for a channel and priority (None matches any); the most specific wins."""

    __tablename__ = "sla_policy"
    __table_args__ = (sa.UniqueConstraint("channel", "priority"),)
    id: str = Field(primary_key=True, max_length=32)
    channel: str | None = None
    priority: str | None = None
    first_response_minutes: float | None = None
    next_response_minutes: float | None = None
    resolution_minutes: float | None = None


class RoutingRule(SQLModel, table=True):
    """New inbound conversations go to the team of the first matching rule (by position)."""

    __tablename__ = "routing_rule"
    id: str = Field(primary_key=True, max_length=32)
    position: int = 0
    channel: str | None = None  # None matches every channel
    keyword: str | None = None  # case-insensitive, in the subject or first message
    team_id: str = Field(foreign_key="team.id")


class MergeRecord(SQLModel, table=True):
    """A customer merge, with what moved, so it can be undone exactly."""

    __tablename__ = "merge_record"
    id: str = Field(primary_key=True, max_length=32)
    source_id: str = Field(foreign_key="customer.id", index=True)  # merged away
    target_id: str = Field(foreign_key="customer.id", index=True)  # kept
    moved: dict[str, list[str]] = Field(default_factory=dict, sa_type=sa.JSON)  # entity -> ids moved
    agent_id: str | None = Field(default=None, foreign_key="agent.id")
    created_at: datetime = _when(default_factory=utcnow)
    undone_at: datetime | None = _when(default=None)


class MergeSuggestion(SQLModel, table=True):
    """Two customers that look like one person; offered to agents, never applied silently."""

    __tablename__ = "merge_suggestion"
    __table_args__ = (sa.UniqueConstraint("customer_id", "other_id"),)
    id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(foreign_key="customer.id", index=True)
    other_id: str = Field(foreign_key="customer.id", index=True)
    reason: str  # e.g. "the phone number +14155550100 appears in an email signature"
    status: str = "open"  # open | accepted | dismissed
    created_at: datetime = _when(default_factory=utcnow)


class Signal(SQLModel, table=True):
    """Ephemeral live events (presence, viewing, typing) shared by every server process through the database."""

    __table_args__ = _LOG_TABLE_ARGS
    seq: int | None = Field(default=None, primary_key=True, sa_type=SEQ_TYPE)
    kind: str  # presence | viewing | typing
    agent_id: str = Field(foreign_key="agent.id")
    conversation_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: datetime = _when(default_factory=utcnow)


class ServerState(SQLModel, table=True):
    """Small server-wide values, e.g. the change-log compaction horizon."""

    __tablename__ = "server_state"
    key: str = Field(primary_key=True, max_length=64)
    value: str


def new_row(model: type[SQLModel], **values: Any) -> dict[str, Any]:
    """A row of `model` for a Core insert: its fields' defaults (factories called), then `values`."""
    return {**_defaults(model)(), **values}


@functools.cache
def _defaults(model: type[SQLModel]) -> Callable[[], dict[str, Any]]:
    """A maker of `model`'s default values (its fields' defaults and default factories) as a dict row."""
    fixed: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    for name, info in model.model_fields.items():
        if info.default_factory is not None:
            factories[name] = info.default_factory  # type: ignore[assignment]
        else:
            fixed[name] = None if info.is_required() else info.default
    return lambda: {**fixed, **{name: make() for name, make in factories.items()}}
