"""Push: intent mutations from clients, each applied at most once by its client mutation id.

Each kind has an argument model (extra="forbid": no mass assignment) and one small applier in `APPLIERS`.
Pushes are stored by group commit (`push`, server/group_commit.py): one thread applies the pushes queued
meanwhile in one transaction, each push in a savepoint and each attempt at a mutation in a savepoint within
it (`store_pushes`, `_apply_one`), so a rejected mutation leaves no trace but its id and reason, and a push
that fails leaves none at all. That transaction takes the change-log lock (`changes.begin_write`)
first, before any read, so writers queue on it before they lock rows, and what they then read is fresh.
Anything the caller may not see is rejected with the same words as something that does not exist.

Concurrency: besides that lock (which a writer elsewhere may not take first), a conversation changes only
through `_update`, a compare-and-set on its version (UPDATE … WHERE id = :id AND version = :read [AND
assignee_id IS NULL]); when the row changed since it was read, the whole mutation runs again from fresh
reads, so its preconditions are checked anew and the loser of a race gets a real reason ("Alice Ward took
this conversation first."). Customers have no version: their row is locked with a no-op UPDATE and read
again under the lock before it is changed.

Permissions: an agent acts on the conversations of their teams. While a conversation is unassigned, any
agent of its team may assign it to themselves or to another active member of the team (help desks let
colleagues hand work to each other); `transfer` re-assigns deliberately. Unassigning someone else's
conversation takes a supervisor or admin.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, select

from agentdesk.domain.clock import utcnow
from agentdesk.domain.identity import normalize_email
from agentdesk.server import delivery, sla
from agentdesk.server.changes import (
    begin_write,
    insert_changes,
    record_conversation_moved,
    record_customer,
    record_customer_left,
    record_upsert,
    upsert_change,
)
from agentdesk.server.group_commit import writer_for
from agentdesk.server.models import (
    Agent,
    AgentTeam,
    Conversation,
    Customer,
    Identity,
    Interaction,
    MergeRecord,
    MergeSuggestion,
    Mutation,
    Team,
    new_row,
)
from agentdesk.server.visibility import teams_seeing

_ID = re.compile(r"^[0-9a-f]{32}$")
_ATTEMPTS = 8  # compare-and-set retries of one mutation before it is rejected as contended


class Rejected(Exception):
    """A mutation that cannot apply; its message is shown to the agent."""


class _Conflict(Exception):
    """A row changed between its read and its compare-and-set: the mutation runs again from fresh reads."""


def _normal_tag(value: str) -> str:
    tag = value.strip().lower()
    if not 1 <= len(tag) <= 50:
        raise ValueError("a tag has 1 to 50 characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in tag):
        raise ValueError("a tag cannot contain control or invisible characters")
    return tag


Tag = Annotated[str, AfterValidator(_normal_tag)]
RowId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationArgs(_Args):
    """unassign; the base of every conversation mutation."""

    conversation_id: RowId
    expected_version: int | None = None  # the version the agent saw: reject if the conversation moved on


def _cc_address(value: str) -> str:
    """A Cc address as the relay needs it: one plain ASCII addr-spec (smtplib's envelope is ASCII only)."""
    address = normalize_email(value)
    if not address.isascii():
        raise ValueError(f"{address} has non-ASCII characters, which our mail relay cannot send to")
    return address


MAX_CC = 10
CcAddress = Annotated[str, StringConstraints(max_length=320), AfterValidator(_cc_address)]


class ReplyArgs(ConversationArgs):
    interaction_id: str = Field(pattern=_ID.pattern)  # the client's id for the new interaction
    channel: Literal["phone", "email", "chat", "sms", "whatsapp"]
    text: str = Field(min_length=1, max_length=100_000)
    subject: str | None = Field(default=None, max_length=1000)
    cc: list[CcAddress] | None = Field(default=None, max_length=MAX_CC)  # email replies only

    @model_validator(mode="after")
    def _cc_on_email(self) -> ReplyArgs:
        if self.cc and self.channel != "email":
            raise ValueError("cc applies to email replies only")
        if self.cc:
            self.cc = list(dict.fromkeys(self.cc))
        return self


class AssignArgs(ConversationArgs):
    agent_id: RowId


class TransferArgs(ConversationArgs):
    to_agent_id: RowId | None = None
    to_team_id: RowId | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> TransferArgs:
        if self.to_agent_id is None and self.to_team_id is None:
            raise ValueError("name a team (to_team_id) or an agent (to_agent_id) to transfer to")
        return self


class StatusArgs(ConversationArgs):
    status: Literal["open", "pending", "closed"]


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SnoozeArgs(ConversationArgs):
    until: Annotated[datetime, AfterValidator(_as_utc)]  # ISO 8601; without an offset it is UTC


class PriorityArgs(ConversationArgs):
    priority: Literal["low", "normal", "high", "urgent"]


class TagArgs(_Args):
    """tag / untag: a conversation's tags, or (with customer_id instead) a customer's."""

    tag: Tag
    conversation_id: RowId | None = None
    customer_id: RowId | None = None
    expected_version: int | None = None

    @model_validator(mode="after")
    def _one_target(self) -> TagArgs:
        if (self.conversation_id is None) == (self.customer_id is None):
            raise ValueError("give either conversation_id or customer_id")
        if self.customer_id is not None and self.expected_version is not None:
            raise ValueError("expected_version applies to conversations only")
        return self


class EditCustomerArgs(_Args):
    """Only these fields of a customer can be edited; a field left out (or null) stays as it is."""

    customer_id: RowId
    display_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    first_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    notes: str | None = Field(default=None, max_length=20_000)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    tags: list[Tag] | None = Field(default=None, max_length=100)


class MergeArgs(_Args):
    source_id: RowId  # merged away
    target_id: RowId  # kept
    merge_id: str = Field(pattern=_ID.pattern)  # the client's id for the merge, so it can be undone


class UnmergeArgs(_Args):
    merge_id: str = Field(pattern=_ID.pattern)


class SuggestionArgs(_Args):
    suggestion_id: RowId


class InteractionArgs(_Args):
    """retry_delivery: send a failed reply again."""

    interaction_id: RowId


class DispositionArgs(InteractionArgs):
    """set_disposition: how a call ended, in the agent's words (e.g. "resolved", "follow-up")."""

    disposition: Tag


class CallbackArgs(ConversationArgs):
    """request_callback: call the customer back (through the voice provider) from the desk."""

    interaction_id: str = Field(pattern=_ID.pattern)  # the client's id for the outbound call
    note: str = Field(default="", max_length=2000)


class MutationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=8, max_length=64)
    kind: str
    args: dict[str, Any]


class MutationResult(BaseModel):
    id: str
    status: Literal["applied", "duplicate", "rejected"]
    reason: str | None = None


@dataclass(frozen=True)
class _Ctx:
    """One attempt at one mutation: the caller, their teams, and the moment it applies."""

    session: Session
    connection: sa.Connection  # the session's, for Core statements (asked once: Session.connection() is not free)
    agent: Agent
    teams: list[str]
    now: datetime


_CONVERSATION = Conversation.__table__  # type: ignore[attr-defined]
_C = _CONVERSATION.c
_MUTATION = Mutation.__table__  # type: ignore[attr-defined]
_INTERACTION = Interaction.__table__  # type: ignore[attr-defined]
# The hot path speaks Core with statements built once (a one-note push is a few index probes and inserts;
# the ORM's unit of work cost several times that). Conversations are plain rows (SimpleNamespace) here.
_CONVERSATION_BY_ID = sa.select(_CONVERSATION).where(_C.id == sa.bindparam("id"))
_INTERACTION_ID = sa.select(_INTERACTION.c.id).where(_INTERACTION.c.id == sa.bindparam("id"))
_MUTATION_BY_ID = sa.select(_MUTATION.c.id, _MUTATION.c.status, _MUTATION.c.reason).where(_MUTATION.c.id == sa.bindparam("id"))
_INSERT_INTERACTION, _INSERT_MUTATION = _INTERACTION.insert(), _MUTATION.insert()
# SET whatever columns the parameters name, WHERE the row is still at the version read.
_SET_CONVERSATION = _CONVERSATION.update().where(_C.id == sa.bindparam("id_"), _C.version == sa.bindparam("version_"))
_UNASSIGNED = _C.assignee_id.is_(None)
_SLA_FIELDS = {"status", "priority", "team_id"}  # a change to any of these moves the SLA clocks


def _gone(what: str) -> Rejected:
    """The one answer for missing and not-visible alike, so a rejection never tells which."""
    return Rejected(f"That {what} no longer exists or is not visible to you.")


def _expect_version(conversation: SimpleNamespace, expected: int | None) -> None:
    if expected is not None and expected != conversation.version:
        raise Rejected(f"This conversation changed since you opened it (version {expected}, now {conversation.version}).")


def _conversation_rows(session: Session, *where: sa.ColumnElement[bool]) -> list[SimpleNamespace]:
    """Conversations as plain rows, fresh from the database, in id order."""
    rows = session.connection().execute(sa.select(_CONVERSATION).where(*where).order_by(_C.id)).mappings()
    return [SimpleNamespace(**row) for row in rows]


def _visible(ctx: _Ctx, conversation_id: str) -> SimpleNamespace | None:
    """A conversation (a plain row) if it is in one of the caller's teams."""
    row = ctx.connection.execute(_CONVERSATION_BY_ID, {"id": conversation_id}).mappings().first()
    return SimpleNamespace(**row) if row is not None and row["team_id"] in ctx.teams else None


def _conversation(ctx: _Ctx, conversation_id: str, expected_version: int | None = None) -> SimpleNamespace:
    """A conversation in one of the caller's teams, at the version the caller expects (if they said)."""
    conversation = _visible(ctx, conversation_id)
    if conversation is None:
        raise _gone("conversation")
    _expect_version(conversation, expected_version)
    return conversation


def _compare_and_set(session: Session, row: SQLModel, *where: sa.ColumnElement[bool], **values: Any) -> None:
    """UPDATE the row SET values WHERE its id and `where` still hold; if they no longer do, run again."""
    table = type(row).__table__  # type: ignore[attr-defined]
    result = session.execute(sa.update(table).where(table.c.id == row.id, *where).values(**values))  # type: ignore[attr-defined]
    if result.rowcount != 1:
        raise _Conflict
    for key, value in values.items():
        set_committed_value(row, key, value)


def _update(
    session: Session,
    now: datetime,
    conversation: SimpleNamespace,
    values: dict[str, Any],
    *,
    only_if_unassigned: bool = False,
    hook: Callable[[Session, SimpleNamespace, datetime], None] | None = None,
    after: Sequence[dict[str, Any]] = (),
) -> bool:
    """The one way a conversation changes: apply `values`, move the SLA clocks, bump version and updated_at,
    write what changed by compare-and-set on the version read, record the change (as a move when the team
    changed) after the change-log rows in `after` (one insert for both). False: nothing to change."""
    changes = {key: value for key, value in values.items() if getattr(conversation, key) != value}
    if not (changes or hook or after):
        return False
    before = dict(vars(conversation))
    vars(conversation).update(changes)
    if hook is not None:
        hook(session, conversation, now)
    if changes.keys() & _SLA_FIELDS:
        sla.on_status(session, conversation, now)
    conversation.version, conversation.updated_at = before["version"] + 1, now
    written = {key: value for key, value in vars(conversation).items() if value != before[key]}
    statement = _SET_CONVERSATION.where(_UNASSIGNED) if only_if_unassigned else _SET_CONVERSATION
    connection = session.connection()
    if connection.execute(statement, {"id_": conversation.id, "version_": before["version"], **written}).rowcount != 1:
        raise _Conflict
    if conversation.team_id != before["team_id"]:
        insert_changes(connection, list(after))
        record_conversation_moved(session, vars(conversation), before["team_id"])
    else:
        insert_changes(connection, [*after, upsert_change("conversations", vars(conversation))])
    return True


def _lock_customer(ctx: _Ctx, customer_id: str) -> Customer | None:
    """Lock the customer's row (a no-op UPDATE), then read it afresh: no lost update between read and write."""
    table = Customer.__table__  # type: ignore[attr-defined]
    ctx.session.execute(sa.update(table).where(table.c.id == customer_id).values(merged_into=table.c.merged_into))
    return ctx.session.get(Customer, customer_id, populate_existing=True)


def _customer(ctx: _Ctx, customer_id: str, what: str = "customer") -> Customer:
    """A customer the caller may see, locked for this transaction."""
    customer = _lock_customer(ctx, customer_id)
    if customer is None or not teams_seeing(ctx.session, customer_id) & set(ctx.teams):
        raise _gone(what)
    return customer


def _save_customer(ctx: _Ctx, customer: Customer, values: dict[str, Any]) -> None:
    changes = {key: value for key, value in values.items() if getattr(customer, key) != value}
    if changes:
        for key, value in changes.items():
            setattr(customer, key, value)
        customer.updated_at = ctx.now
        record_upsert(ctx.session, customer)


def _team_member(session: Session, agent_id: str, team_id: str) -> Agent:
    """An active agent of the team (agents and teams are visible to everyone, so this may say which fails)."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise Rejected("That agent does not exist.")
    if not agent.active:
        raise Rejected(f"{agent.name} is disabled and cannot take conversations.")
    if not _is_member(session, agent_id, team_id):
        raise Rejected(f"{agent.name} is not in this conversation's team.")
    return agent


def _is_member(session: Session, agent_id: str, team_id: str) -> bool:
    return session.exec(select(AgentTeam.id).where(AgentTeam.agent_id == agent_id, AgentTeam.team_id == team_id)).first() is not None


def _agent_name(session: Session, agent_id: str) -> str:
    agent = session.get(Agent, agent_id)
    return agent.name if agent else "Someone else"


def _new_id_free(ctx: _Ctx, interaction_id: str) -> None:
    if ctx.connection.execute(_INTERACTION_ID, {"id": interaction_id}).first() is not None:
        raise Rejected("A message with this id already exists.")


def _add_interaction(ctx: _Ctx, args: ReplyArgs, direction: str) -> None:
    conversation = _conversation(ctx, args.conversation_id, args.expected_version)
    _new_id_free(ctx, args.interaction_id)
    if direction == "outbound" and args.channel == "phone":
        raise Rejected("A call cannot carry a written reply; ask for a callback or reply by SMS.")
    if direction == "outbound" and args.channel == "chat" and conversation.channel != "chat":
        raise Rejected("A chat reply reaches only the visitor of a chat conversation; reply on another channel.")
    if direction == "note" and args.cc:
        raise Rejected("An internal note is sent to nobody; it cannot have cc addresses.")
    to_address = None
    if direction == "outbound" and args.channel in delivery.OUTBOUND_CHANNELS:
        to_address = delivery.recipient(ctx.session, conversation, args.channel)
        if to_address is None:
            raise Rejected(f"This customer has no {_ADDRESS_NAME[args.channel]} to reply to; reply on another channel.")
    change = _insert_interaction(
        ctx, conversation, to_address, id=args.interaction_id, channel=args.channel, direction=direction,
        text=args.text, subject=args.subject,
        meta={"cc": args.cc} if args.cc else {},  # the relay copies them in (delivery._job)
        # Chat replies are stored for the visitor's websocket (server/channels/webchat.py) to carry.
        delivery_status="sent" if direction == "outbound" else None,
    )
    hook = sla.on_agent_reply if direction == "outbound" else None  # a note answers nobody
    _update(ctx.session, ctx.now, conversation, {"last_message_at": ctx.now}, hook=hook, after=[change])


def _insert_interaction(ctx: _Ctx, conversation: SimpleNamespace, to_address: str | None, **values: Any) -> dict[str, Any]:
    """The caller's new interaction on `conversation`, queued for delivery to `to_address` if given; returns
    its change-log row, for `_update` to record with the conversation's."""
    interaction = SimpleNamespace(**new_row(
        Interaction, conversation_id=conversation.id, customer_id=conversation.customer_id, author_id=ctx.agent.id,
        occurred_at=ctx.now, **values,
    ))
    if to_address is not None:
        # Its Delivery row is flushed after the insert below (at the savepoint's end or the next ORM query).
        delivery.enqueue(ctx.session, interaction, to_address)  # type: ignore[arg-type]
    ctx.connection.execute(_INSERT_INTERACTION, vars(interaction))
    return upsert_change("interactions", vars(interaction), conversation.team_id)


_ADDRESS_NAME = {"email": "email address", "sms": "phone number", "whatsapp": "WhatsApp number"}


def apply_reply(ctx: _Ctx, args: ReplyArgs) -> None:
    _add_interaction(ctx, args, "outbound")


def apply_note(ctx: _Ctx, args: ReplyArgs) -> None:
    _add_interaction(ctx, args, "note")


def _interaction(ctx: _Ctx, interaction_id: str) -> Interaction:
    """An interaction of a conversation in one of the caller's teams."""
    interaction = ctx.session.get(Interaction, interaction_id)
    if interaction is None or _visible(ctx, interaction.conversation_id) is None:
        raise _gone("message")
    return interaction


def apply_retry_delivery(ctx: _Ctx, args: InteractionArgs) -> None:
    interaction = _interaction(ctx, args.interaction_id)
    if delivery.retry(ctx.session, interaction.id) is None:
        raise Rejected("Only a reply that failed to send can be sent again.")


def apply_set_disposition(ctx: _Ctx, args: DispositionArgs) -> None:
    interaction = _interaction(ctx, args.interaction_id)
    if interaction.channel != "phone" or interaction.direction == "note":
        raise Rejected("Only a call has a disposition.")
    interaction.meta = {**interaction.meta, "disposition": args.disposition}
    record_upsert(ctx.session, interaction)


def apply_request_callback(ctx: _Ctx, args: CallbackArgs) -> None:
    """An outbound call to the customer, placed by the voice provider; its progress lands on the timeline."""
    conversation = _conversation(ctx, args.conversation_id, args.expected_version)
    _new_id_free(ctx, args.interaction_id)
    to_address = delivery.recipient(ctx.session, conversation, "phone")
    if to_address is None:
        raise Rejected("This customer has no phone number to call back.")
    change = _insert_interaction(
        ctx, conversation, to_address, id=args.interaction_id, channel="phone", direction="outbound",
        text=args.note or "Callback", meta={"call": "callback"},
    )
    _update(ctx.session, ctx.now, conversation, {"last_message_at": ctx.now}, after=[change])


def apply_assign(ctx: _Ctx, args: AssignArgs) -> None:
    """Take an unassigned conversation (or give it to a teammate); the first of two at once wins."""
    conversation = _conversation(ctx, args.conversation_id)
    if conversation.assignee_id == args.agent_id:
        return  # already theirs
    if conversation.assignee_id is not None:
        raise Rejected(f"{_agent_name(ctx.session, conversation.assignee_id)} took this conversation first.")
    _expect_version(conversation, args.expected_version)
    agent = _team_member(ctx.session, args.agent_id, conversation.team_id)
    _update(ctx.session, ctx.now, conversation, {"assignee_id": agent.id}, only_if_unassigned=True)


def apply_unassign(ctx: _Ctx, args: ConversationArgs) -> None:
    conversation = _conversation(ctx, args.conversation_id, args.expected_version)
    assignee = conversation.assignee_id
    if assignee not in (None, ctx.agent.id) and ctx.agent.role not in ("supervisor", "admin"):
        raise Rejected(f"Only {_agent_name(ctx.session, assignee)} or a supervisor can unassign this conversation.")
    _update(ctx.session, ctx.now, conversation, {"assignee_id": None})


def apply_transfer(ctx: _Ctx, args: TransferArgs) -> None:
    """To another team (the assignee stays only if they are in it) and/or to an agent of the (new) team."""
    conversation = _conversation(ctx, args.conversation_id, args.expected_version)
    team_id = args.to_team_id or conversation.team_id
    if args.to_team_id is not None:
        team = ctx.session.get(Team, args.to_team_id)
        if team is None or not team.active:
            raise Rejected("That team does not exist or is not active.")
    if args.to_agent_id is not None:
        assignee: str | None = _team_member(ctx.session, args.to_agent_id, team_id).id
    else:
        kept = conversation.assignee_id
        assignee = kept if kept is not None and _is_member(ctx.session, kept, team_id) else None
    _update(ctx.session, ctx.now, conversation, {"team_id": team_id, "assignee_id": assignee})


def apply_set_status(ctx: _Ctx, args: StatusArgs) -> None:
    conversation = _conversation(ctx, args.conversation_id, args.expected_version)
    closed_at = (conversation.closed_at or ctx.now) if args.status == "closed" else None
    _update(ctx.session, ctx.now, conversation, {"status": args.status, "closed_at": closed_at, "snooze_until": None})


def apply_snooze(ctx: _Ctx, args: SnoozeArgs) -> None:
    conversation = _conversation(ctx, args.conversation_id, args.expected_version)
    if args.until <= ctx.now:
        raise Rejected("A snooze must end in the future.")
    if conversation.status == "closed":
        raise Rejected("This conversation is closed; reopen it before snoozing it.")
    _update(ctx.session, ctx.now, conversation, {"status": "snoozed", "snooze_until": args.until})


def apply_set_priority(ctx: _Ctx, args: PriorityArgs) -> None:
    conversation = _conversation(ctx, args.conversation_id, args.expected_version)
    _update(ctx.session, ctx.now, conversation, {"priority": args.priority})


def _retag(ctx: _Ctx, args: TagArgs, add: bool) -> None:
    """Add or remove one tag, on a conversation or a customer; doing it twice changes nothing more."""

    def retagged(tags: list[str]) -> list[str]:
        if (args.tag in tags) == add:
            return tags
        return [*tags, args.tag] if add else [tag for tag in tags if tag != args.tag]

    if args.conversation_id is not None:
        conversation = _conversation(ctx, args.conversation_id, args.expected_version)
        _update(ctx.session, ctx.now, conversation, {"tags": retagged(list(conversation.tags))})
    else:
        customer = _customer(ctx, args.customer_id)  # type: ignore[arg-type]
        _save_customer(ctx, customer, {"tags": retagged(list(customer.tags))})


def apply_tag(ctx: _Ctx, args: TagArgs) -> None:
    _retag(ctx, args, add=True)


def apply_untag(ctx: _Ctx, args: TagArgs) -> None:
    _retag(ctx, args, add=False)


def apply_edit_customer(ctx: _Ctx, args: EditCustomerArgs) -> None:
    customer = _customer(ctx, args.customer_id)
    values = args.model_dump(exclude_unset=True, exclude_none=True, exclude={"customer_id"})
    if "tags" in values:
        values["tags"] = list(dict.fromkeys(values["tags"]))
    _save_customer(ctx, customer, values)


_MOVABLE: dict[str, type[Identity] | type[Conversation] | type[Interaction]] = {
    "identities": Identity,
    "conversations": Conversation,
    "interactions": Interaction,
}


def _move(ctx: _Ctx, from_id: str, to_id: str, only: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Move a customer's identities, conversations and interactions (those in `only`, if given) to another."""
    moved: dict[str, list[str]] = {}
    for entity, model in _MOVABLE.items():
        table = model.__table__  # type: ignore[union-attr]
        where = [table.c.customer_id == from_id]
        if only is not None:
            where.append(table.c.id.in_(only.get(entity, [])))
        rows: list[Any]
        if model is Conversation:
            rows = _conversation_rows(ctx.session, *where)
            for row in rows:
                _update(ctx.session, ctx.now, row, {"customer_id": to_id})
        else:
            rows = list(ctx.session.exec(select(model).where(*where).order_by(table.c.id)))
            for row in rows:
                row.customer_id = to_id
                record_upsert(ctx.session, row)
        moved[entity] = [row.id for row in rows]
    return moved


def _reannounce(ctx: _Ctx, seen_before: dict[str, set[str]]) -> None:
    """After rows moved between customers: a team that lost sight of a customer drops it (with its
    identities and suggestions); a team that gained sight gets it whole (its cursor is past the customer's
    old changes)."""
    session = ctx.session
    for customer_id, before in seen_before.items():
        after = teams_seeing(session, customer_id)
        record_customer_left(session, customer_id, before - after)
        if after - before:
            record_customer(session, customer_id)


def apply_merge_customers(ctx: _Ctx, args: MergeArgs) -> None:
    if args.source_id == args.target_id:
        raise Rejected("A customer cannot be merged into themselves.")
    source = _customer(ctx, args.source_id)
    target = _customer(ctx, args.target_id)
    if ctx.session.get(MergeRecord, args.merge_id) is not None:  # read under the locks, so fresh
        raise Rejected("A merge with this id already exists.")
    if source.merged_into or target.merged_into:
        raise Rejected("One of these customers was already merged into another.")
    seen_before = {customer.id: teams_seeing(ctx.session, customer.id) for customer in (source, target)}
    moved = _move(ctx, source.id, target.id)
    _save_customer(ctx, source, {"merged_into": target.id})
    ctx.session.add(MergeRecord(id=args.merge_id, source_id=source.id, target_id=target.id, moved=moved, agent_id=ctx.agent.id))
    pair = sa.or_(
        sa.and_(MergeSuggestion.customer_id == source.id, MergeSuggestion.other_id == target.id),
        sa.and_(MergeSuggestion.customer_id == target.id, MergeSuggestion.other_id == source.id),
    )
    for suggestion in ctx.session.exec(select(MergeSuggestion).where(MergeSuggestion.status == "open", pair)):
        suggestion.status = "accepted"
        record_upsert(ctx.session, suggestion)
    _reannounce(ctx, seen_before)


def apply_unmerge(ctx: _Ctx, args: UnmergeArgs) -> None:
    """Undo one merge exactly: move back what it moved (and only that), clear merged_into."""
    record = ctx.session.get(MergeRecord, args.merge_id)
    if record is None:
        raise _gone("merge")
    target = _customer(ctx, record.target_id, "merge")  # the moved rows live there: seeing it is seeing the merge
    source = _lock_customer(ctx, record.source_id)
    ctx.session.refresh(record)  # under the locks: a concurrent undo is seen
    if record.undone_at is not None:
        raise Rejected("This merge was already undone.")
    if target.merged_into or source is None:
        raise Rejected(f"{target.display_name} was merged again since; undo that merge first.")
    seen_before = {customer.id: teams_seeing(ctx.session, customer.id) for customer in (source, target)}
    _move(ctx, target.id, source.id, only=record.moved)
    _save_customer(ctx, source, {"merged_into": None})
    record.undone_at = ctx.now
    ctx.session.add(record)
    _reannounce(ctx, seen_before)


def apply_dismiss_suggestion(ctx: _Ctx, args: SuggestionArgs) -> None:
    suggestion = ctx.session.get(MergeSuggestion, args.suggestion_id)
    if suggestion is None or not teams_seeing(ctx.session, suggestion.customer_id) & set(ctx.teams):
        raise _gone("suggestion")
    if suggestion.status == "accepted":
        raise Rejected("These customers were already merged.")
    if suggestion.status == "open":
        _compare_and_set(ctx.session, suggestion, MergeSuggestion.__table__.c.status == "open", status="dismissed")  # type: ignore[attr-defined]
        record_upsert(ctx.session, suggestion)


# kind -> (argument model, applier). Each applier runs after the change-log lock, in a savepoint of the
# transaction its push shares with others (store_pushes).
APPLIERS: dict[str, tuple[type[BaseModel], Callable[[_Ctx, Any], None]]] = {
    "reply": (ReplyArgs, apply_reply),
    "note": (ReplyArgs, apply_note),
    "assign": (AssignArgs, apply_assign),
    "unassign": (ConversationArgs, apply_unassign),
    "transfer": (TransferArgs, apply_transfer),
    "set_status": (StatusArgs, apply_set_status),
    "snooze": (SnoozeArgs, apply_snooze),
    "set_priority": (PriorityArgs, apply_set_priority),
    "tag": (TagArgs, apply_tag),
    "untag": (TagArgs, apply_untag),
    "edit_customer": (EditCustomerArgs, apply_edit_customer),
    "merge_customers": (MergeArgs, apply_merge_customers),
    "unmerge": (UnmergeArgs, apply_unmerge),
    "dismiss_suggestion": (SuggestionArgs, apply_dismiss_suggestion),
    "retry_delivery": (InteractionArgs, apply_retry_delivery),
    "set_disposition": (DispositionArgs, apply_set_disposition),
    "request_callback": (CallbackArgs, apply_request_callback),
}


def wake_snoozed(session: Session, now: datetime | None = None) -> int:
    """Reopen snoozed conversations whose time has come (a periodic server job); returns how many woke."""
    now = now or utcnow()
    begin_write(session)
    woke = 0
    for conversation in _conversation_rows(session, _C.status == "snoozed", _C.snooze_until <= now):
        try:
            with session.begin_nested():  # a conflict undoes this conversation's writes (its hooks' too) alone
                woke += _update(session, now, conversation, {"status": "open", "snooze_until": None})
        except _Conflict:  # changed since read (an agent reopened it?): its new state stands; a next run sees it
            pass
    session.commit()
    return woke


def _repeat(mutation: Any) -> MutationResult:
    """A mutation id seen before: applied ones are duplicates, rejected ones stay rejected (same reason)."""
    if mutation.status == "rejected":
        return MutationResult(id=mutation.id, status="rejected", reason=mutation.reason)
    return MutationResult(id=mutation.id, status="duplicate")


def _parsed(m: MutationIn) -> tuple[Callable[[_Ctx, Any], None], BaseModel]:
    """The applier of `m` and its arguments, validated; Rejected if either is wrong."""
    entry = APPLIERS.get(m.kind)
    if entry is None:
        raise Rejected(f"Unknown mutation kind {m.kind!r}.")
    model, applier = entry
    try:
        return applier, model.model_validate(m.args)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise Rejected(f"Invalid {m.kind}: {where + ': ' if where else ''}{error['msg']}") from None


def _apply_one(session: Session, agent: Agent, teams: list[str], m: MutationIn) -> MutationResult:
    """One mutation, at most once by its id: each attempt in a savepoint of its own, so a rejection or a lost
    race undoes that attempt's writes and nothing else; then its id is recorded with its outcome (applied or
    rejected). An unforeseen exception propagates, and its push's savepoint undoes it all (store_pushes)."""
    connection = session.connection()
    if (seen := connection.execute(_MUTATION_BY_ID, {"id": m.id}).first()) is not None:
        return _repeat(seen)
    status, reason = "rejected", "Others are changing this right now; please try again."
    try:
        applier, args = _parsed(m)
        for _attempt in range(_ATTEMPTS):
            session.expunge_all()  # no stale ORM copies: earlier mutations wrote through Core
            try:
                with session.begin_nested():
                    applier(_Ctx(session, connection, agent, teams, utcnow()), args)
            except _Conflict:  # lost a race on a row: again, from fresh reads
                continue
            status, reason = "applied", None
            break
    except Rejected as exc:
        status, reason = "rejected", str(exc)
    return _recorded(connection, agent, m, status, reason)


def _recorded(connection: sa.Connection, agent: Agent, m: MutationIn, status: str, reason: str | None) -> MutationResult:
    """Record the mutation's id with its outcome (a later push of the same id is answered from it)."""
    connection.execute(_INSERT_MUTATION, {"id": m.id, "agent_id": agent.id, "kind": m.kind, "status": status,
                                          "reason": reason, "created_at": utcnow()})
    return MutationResult(id=m.id, status=status, reason=reason)  # type: ignore[arg-type]


def _apply_plain(session: Session, agent: Agent, teams: list[str], m: MutationIn) -> MutationResult:
    """`_apply_one` without savepoints, for a mutation that applies at the first attempt (almost all). One that
    does not parse is rejected here (nothing written yet: no reason to redo the batch, which anyone could force
    with an unknown kind); any other rejection, lost race or error is raised, and the caller redoes the whole
    batch the careful way."""
    connection = session.connection()
    if (seen := connection.execute(_MUTATION_BY_ID, {"id": m.id}).first()) is not None:
        return _repeat(seen)
    try:
        applier, args = _parsed(m)
    except Rejected as exc:
        return _recorded(connection, agent, m, "rejected", str(exc))
    session.expunge_all()  # no stale ORM copies: earlier mutations wrote through Core
    applier(_Ctx(session, connection, agent, teams, utcnow()), args)
    session.flush()  # its ORM writes before the next mutation's, as a savepoint's end would
    return _recorded(connection, agent, m, "applied", None)


@dataclass(frozen=True)
class Push:
    """One push request: the caller, their teams and their mutations, applied in order."""

    agent: Agent
    teams: list[str]
    mutations: list[MutationIn]


def store_pushes(session: Session, pushes: Sequence[Push]) -> list[list[MutationResult] | Exception]:
    """Apply pushes in one transaction and commit: per push its results, or the exception that stopped it.

    First without savepoints (two per push, SAVEPOINT and RELEASE statements each, cost about a third of a
    one-note push): when every mutation applies at once or is a repeat, that transaction commits. Anything
    else (a rejection, a lost race, an error) rolls it back, and the batch is stored again by
    `_store_carefully`: nobody has been answered yet, so nobody sees the first try."""
    try:
        begin_write(session)  # the change-log lock first, before any read (see the module docstring)
        outcomes: list[list[MutationResult] | Exception] = [
            [_apply_plain(session, pushed.agent, pushed.teams, m) for m in pushed.mutations] for pushed in pushes
        ]
    except Exception:  # noqa: BLE001 - whatever it was, the careful way sorts it out push by push
        session.rollback()
        return _store_carefully(session, pushes)
    session.commit()  # not redone if it fails: a commit that did land would be answered "duplicate" (group commit
    return outcomes  # answers every caller with the error instead, and their retries are told what happened)


def _store_carefully(session: Session, pushes: Sequence[Push]) -> list[list[MutationResult] | Exception]:
    """Each push in a savepoint: one that fails (a bug, a broken row, a database error) is undone whole,
    mutation ids included, so a retry applies it afresh, and it leaves the transaction usable for the others
    (on PostgreSQL an error outside a savepoint would abort the transaction, and its COMMIT roll back)."""
    begin_write(session)
    outcomes: list[list[MutationResult] | Exception] = []
    for pushed in pushes:
        outcome: list[MutationResult] | Exception
        try:
            with session.begin_nested():
                outcome = [_apply_one(session, pushed.agent, pushed.teams, m) for m in pushed.mutations]
        except Exception as exc:  # unforeseen: this push fails, the others go on
            outcome = exc
        outcomes.append(outcome)
    session.commit()
    return outcomes


async def push(engine: sa.Engine, agent: Agent, teams: list[str], mutations: list[MutationIn]) -> list[MutationResult]:
    """Apply a push's mutations in order, each at most once; returns once their transaction has committed.
    Concurrent pushes share transactions (group commit, server/group_commit.py)."""
    writer = writer_for(engine, store_pushes, name="agentdesk-push-writer", weight=_mutation_count,
                        max_weight=MAX_BATCH_MUTATIONS)
    return await writer.submit(Push(agent, teams, mutations))


MAX_BATCH_MUTATIONS = 500  # per transaction (a push's most): one holds the write lock, and ingest waits on it


def _mutation_count(pushed: Push) -> int:
    return len(pushed.mutations)
