"""The one path every inbound interaction takes, whatever its channel or source (DESIGN §4).

Integration API, email, Twilio webhooks and web chat all come through here: a retried delivery is recognised
by its external id; the sender is resolved to a customer through a normalised identity (so texts, WhatsApp
messages and calls from one number land on one timeline); the interaction is threaded into a conversation;
a new conversation is routed; SLA clocks start; contacts mentioned in the text become merge suggestions.

Three ways in, one code path (`_store_batch`):
- `ingest(session, item)`: one item, committed in the caller's session;
- `ingest_many(session, items)`: a batch in one transaction, an outcome per item;
- `await submit(engine, item)`: group commit for concurrent async callers (webhooks): a writer thread
  stores whatever is queued in one transaction and answers each caller once that transaction committed.

It is the server's hottest write path (issue 6: >= 1,000 messages/s on one worker), so it speaks SQLAlchemy
Core with statements built once and plain dict rows: the ORM's unit of work, identity map and model
validation cost several times the SQL itself here and buy nothing for rows written once and forgotten.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, SQLModel

from agentdesk.domain.clock import utcnow
from agentdesk.domain.identity import AddressError, contacts_in_text, normalize_address
from agentdesk.server import routing, sla
from agentdesk.server.auth import new_id
from agentdesk.server.changes import begin_write, insert_changes, upsert_change
from agentdesk.server.group_commit import GroupCommit, writer_for
from agentdesk.server.models import Conversation, Customer, Identity, Interaction, MergeSuggestion, new_row

CHANNELS = ("phone", "email", "chat", "sms", "whatsapp")
_SUBJECT_PREFIX = re.compile(r"^\s*((re|fwd?|aw|sv|vs|tr)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_CONTACT_FIELDS = ("email", "phone", "prechat")  # metadata that may name a contact of the customer's
_PREPARE_INLINE_CHARS = 2_000  # an SMS or a chat line is prepared on the event loop; longer texts in a thread
_MAY_NAME_A_CONTACT = re.compile(r"[@\d]")  # no digit and no @: no phone number or email address to find


class InboundError(ValueError):
    """An interaction that cannot be accepted; the message says why (for the sender's logs)."""


@dataclass
class Inbound:
    channel: str
    address: str
    text: str = ""
    name: str | None = None
    subject: str | None = None
    external_id: str | None = None
    occurred_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Email threading: the Message-IDs this one answers (In-Reply-To first, then References).
    references: list[str] = field(default_factory=list)
    thread_key: str | None = None  # a chat session id
    auto_reply: bool = False  # auto-replies and bounces neither reopen a conversation nor restart SLA clocks


@dataclass(frozen=True)
class Ingested:
    interaction_id: str
    conversation_id: str
    customer_id: str
    duplicate: bool = False


INGEST_ATTEMPTS = 3  # tries of a batch that lost a race to a concurrent writer of the same rows
Outcome = Ingested | Exception  # per item of a batch: stored (or recognised), or why not


# ------------------------------------------------------------------------------------------- entry points


def ingest(session: Session, item: Inbound, *, default_region: str = "US", attempts: int = INGEST_ATTEMPTS) -> Ingested:
    """Store one inbound interaction (at most once per channel and external id) and commit."""
    outcome = _store_batch(session, [_prepare(item, default_region)], attempts)[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def ingest_many(session: Session, items: Sequence[Inbound], *, default_region: str = "US", attempts: int = INGEST_ATTEMPTS) -> list[Outcome]:
    """Store a batch in one transaction and commit; an outcome per item, in order. An item that cannot be
    stored (InboundError, routing.NoTeam, a database error after `attempts` tries) is left out and the
    others are stored without it."""
    prepared: list[_Prepared | InboundError] = []
    for item in items:
        try:
            prepared.append(_prepare(item, default_region))
        except InboundError as exc:
            prepared.append(exc)
    valid = [p for p in prepared if isinstance(p, _Prepared)]
    stored = iter(_store_batch(session, valid, attempts))
    return [p if isinstance(p, InboundError) else next(stored) for p in prepared]


async def submit(engine: sa.Engine, item: Inbound, *, default_region: str = "US") -> Ingested:
    """Store one interaction with group commit: returns once the transaction holding it has committed.

    For async callers under concurrent load (webhooks); raises what `ingest` raises."""
    scanned = len(item.text) + sum(len(str(item.metadata.get(key, ""))) for key in _CONTACT_FIELDS)
    if scanned > _PREPARE_INLINE_CHARS:  # the contact scan of a long text takes up to a second: not on the event loop
        prepared = await asyncio.to_thread(_prepare, item, default_region)
    else:
        prepared = _prepare(item, default_region)
    return await _writer_for(engine).submit(prepared)


# ------------------------------------------------------------------------------------------- one batch


@dataclass(frozen=True)
class _Prepared:
    item: Inbound
    kind: str  # identity kind and normalised address of the sender
    address: str
    region: str
    contacts: list[tuple[str, str]]  # (kind, address) named in the message: merge suggestions


def _prepare(item: Inbound, default_region: str) -> _Prepared:
    if item.channel not in CHANNELS:
        raise InboundError(f"Unknown channel {item.channel!r}; expected one of: {', '.join(CHANNELS)}.")
    try:
        kind, address = _sender(item.channel, item.address, default_region)
    except AddressError as exc:
        raise InboundError(str(exc)) from None
    # Contacts named in the message (a signature, a pre-chat form) may belong to someone else.
    text = "\n".join([item.text, *(str(v) for k, v in item.metadata.items() if k in _CONTACT_FIELDS)])
    contacts = contacts_in_text(text, default_region) if _MAY_NAME_A_CONTACT.search(text) else []
    return _Prepared(item, kind, address, default_region, contacts)


@functools.lru_cache(maxsize=16_384)
def _sender(channel: str, address: str, region: str) -> tuple[str, str]:
    """normalize_address, remembered: most messages come from returning senders, and parsing a phone number
    costs more than the rest of preparing the message (an AddressError is not remembered)."""
    return normalize_address(channel, address, region)


# Raised by `_store` before it writes anything for its item: the batch carries on without that item.
_REFUSALS = (routing.NoTeam,)
# A concurrent delivery of the same message or of the same new customer (in another process) won the race,
# or the database was busy: after a rollback the next attempt finds their rows.
_RETRYABLE = (IntegrityError, OperationalError)


def _store_batch(session: Session, batch: Sequence[_Prepared], attempts: int) -> list[Outcome]:
    """Store `batch` in one transaction and commit; an outcome per item.

    First all at once (`_Batch`: writes kept until the end or until a read needs them). If the database
    refuses something, everything is rolled back and stored again item by item, each item's writes sent
    before the next item starts, so the item at fault is known: it is charged one attempt (and dropped with
    the error after `attempts`, or at once for an error a retry cannot cure) and the others are stored
    without it. Results are handed out only after the commit, so no caller hears of a rolled-back row."""
    if not batch:
        return []
    failed: dict[int, Exception] = {}
    tries = [0] * len(batch)
    careful = False  # after a failure: item by item, to learn which one fails
    batch_tries = 0
    while True:
        stored: dict[int, Ingested] = {}
        current: int | None = None
        try:
            begin_write(session)  # first: writers queue here, so what we read below stays true until commit
            work = _Batch(session, [p for index, p in enumerate(batch) if index not in failed])
            for index, prepared in enumerate(batch):
                if index in failed:
                    continue
                current = index
                try:
                    stored[index] = _store(work, prepared)
                except _REFUSALS as exc:
                    failed[index] = exc
                if careful:
                    work.flush()
            current = None
            work.finish()
            session.commit()
        except Exception as exc:
            session.rollback()
            if not careful:
                careful = True
            elif current is not None:
                tries[current] += 1
                if tries[current] >= attempts or not isinstance(exc, _RETRYABLE):
                    failed[current] = exc
            else:  # the change log or the commit failed: no item to blame
                batch_tries += 1
                if batch_tries >= attempts or not isinstance(exc, _RETRYABLE):
                    return [failed.get(index, exc) for index in range(len(batch))]
            continue
        _forget_stale(session, stored.values())
        return [failed[index] if index in failed else stored[index] for index in range(len(batch))]


def _forget_stale(session: Session, results: Any) -> None:
    """Rows written here bypassed the session's identity map: expire any copy of them the caller holds."""
    if not session.identity_map:
        return
    for result in results:
        for model, key in ((Conversation, result.conversation_id), (Customer, result.customer_id)):
            obj = session.identity_map.get(session.identity_key(model, key))
            if obj is not None:
                session.expire(obj)


# ------------------------------------------------------------------------------------------- statements


def _table(model: type[SQLModel]) -> sa.Table:
    return model.__table__  # type: ignore[attr-defined]


_CUSTOMER, _IDENTITY, _CONVERSATION, _INTERACTION, _SUGGESTION = (
    _table(m) for m in (Customer, Identity, Conversation, Interaction, MergeSuggestion)
)
_p = sa.bindparam
# What a batch reads up front: the interactions it may repeat or answer, its senders, their open conversations.
# Both IN lists are matched as pairs afterwards; the unique (channel, external_id) and (kind, address) indexes
# serve them.
_SEEN_ANY = sa.select(
    _INTERACTION.c.channel, _INTERACTION.c.external_id, _INTERACTION.c.id, _INTERACTION.c.conversation_id,
    _INTERACTION.c.customer_id,
).where(_INTERACTION.c.channel.in_(_p("channels", expanding=True)), _INTERACTION.c.external_id.in_(_p("external_ids", expanding=True)))
_OWNERS_ANY = (
    sa.select(_IDENTITY.c.kind, _IDENTITY.c.address, _CUSTOMER.c.id, _CUSTOMER.c.merged_into)
    .join(_CUSTOMER, _CUSTOMER.c.id == _IDENTITY.c.customer_id)
    .where(_IDENTITY.c.kind.in_(_p("kinds", expanding=True)), _IDENTITY.c.address.in_(_p("addresses", expanding=True)))
)
_NOT_CLOSED = _CONVERSATION.c.status != "closed"
_CONTACT_OWNERS_ANY = sa.select(_IDENTITY.c.kind, _IDENTITY.c.address, _IDENTITY.c.customer_id).where(
    _IDENTITY.c.kind.in_(_p("kinds", expanding=True)), _IDENTITY.c.address.in_(_p("addresses", expanding=True))
)
_SUGGESTED_ANY = sa.select(_SUGGESTION.c.customer_id, _SUGGESTION.c.other_id).where(
    _SUGGESTION.c.customer_id.in_(_p("customer_ids", expanding=True)), _SUGGESTION.c.other_id.in_(_p("customer_ids", expanding=True))
)
_OPEN_OF_CUSTOMERS = sa.select(_CONVERSATION).where(
    _CONVERSATION.c.customer_id.in_(_p("customer_ids", expanding=True)), _CONVERSATION.c.channel.in_(_p("channels", expanding=True)), _NOT_CLOSED
)
_CUSTOMERS_ANY = sa.select(_CUSTOMER).where(_CUSTOMER.c.id.in_(_p("customer_ids", expanding=True)))
_IDENTITIES_ANY = sa.select(_IDENTITY).where(_IDENTITY.c.customer_id.in_(_p("customer_ids", expanding=True))).order_by(_IDENTITY.c.id)
_SUGGESTIONS_OF_ANY = sa.select(_SUGGESTION).where(
    _SUGGESTION.c.customer_id.in_(_p("customer_ids", expanding=True)) | _SUGGESTION.c.other_id.in_(_p("customer_ids", expanding=True))
).order_by(_SUGGESTION.c.id)
# What an item may read on its own (after the batch's pending writes are sent: `_Batch.query`).
_MERGED_INTO = sa.select(_CUSTOMER.c.id, _CUSTOMER.c.merged_into).where(_CUSTOMER.c.id == _p("id"))
_CONVERSATION_BY_ID = sa.select(_CONVERSATION).where(_CONVERSATION.c.id == _p("id"))
_MINE = sa.select(_CONVERSATION).where(_CONVERSATION.c.customer_id == _p("customer_id"), _CONVERSATION.c.channel == _p("channel"))
_ALL_BY_RECENCY = _MINE.order_by(_CONVERSATION.c.last_message_at.desc())
_BY_THREAD_KEY = _MINE.where(_CONVERSATION.c.thread_key == _p("thread_key")).limit(1)
_INSERT = {table: table.insert() for table in (_CUSTOMER, _IDENTITY, _CONVERSATION, _INTERACTION, _SUGGESTION)}
_UPDATE_CONVERSATION = _CONVERSATION.update().where(_CONVERSATION.c.id == _p("conversation_id"))
# What a message changes on its conversation (status: reopening; the rest: SLA clocks and bookkeeping).
_TOUCHED = ("status", "snooze_until", "closed_at", "first_response_due", "next_response_due", "resolution_due",
            "awaiting_since", "sla_due", "last_message_at", "updated_at", "version")




# ------------------------------------------------------------------------------------------- one batch's state


class _Batch:
    """The rows a batch reads and writes, between its first query and its commit.

    Up front, a few queries fetch what most items need: the interactions the batch may repeat (or answer,
    for email), the customers behind its senders and their open conversations, the owners of the contacts
    the messages name (merge suggestions). Each item then
    decides in memory (these dicts are the truth for what they hold: the batch's own changes go into them
    too) and queues its writes; they are sent with one executemany per table, at the end or before any
    query an item makes on its own (`query`), so that query sees them. The change-log rows go last.
    """

    def __init__(self, session: Session, items: Sequence[_Prepared]) -> None:
        self.session = session
        self.connection = session.connection()
        self.seen: dict[tuple[str, str], Ingested] = {}  # (channel, external id) -> its interaction
        self.owners: dict[tuple[str, str], str | None] = {}  # (kind, address) -> customer, merges followed
        self.contact_owners: dict[tuple[str, str], str | None] = {}  # the identity's own customer (no merges followed)
        self.suggested: set[tuple[str, str]] = set()  # merge suggestions held, as (customer_id, other_id)
        self.conversations: dict[str, SimpleNamespace] = {}  # id -> row: one object per conversation
        self.of_customer: dict[str, list[SimpleNamespace]] = defaultdict(list)  # customer -> their conversations held
        self._loaded: set[str] = set()  # customers whose open conversations are all held (new ones)
        self._loaded_on: set[tuple[str, str]] = set()  # (customer, channel): their open conversations there are held
        self.customers: dict[str, tuple[Any, list[Any]]] = {}  # id -> (customer row, identity rows): read or made here
        self.suggestions: dict[str, list[Any]] = defaultdict(list)  # customer id -> merge suggestions naming them, as read
        self.rotation = routing.Rotation(session)  # round robin for the whole batch
        self.changes: list[dict[str, Any]] = []
        self._pending: dict[sa.Table, list[dict[str, Any]]] = {table: [] for table in _INSERT}
        self._unsaved: set[str] = set()  # conversations created here, not yet inserted
        self._dirty: set[str] = set()  # conversations read from the database and changed here
        self._prefetch(items)

    def _prefetch(self, items: Sequence[_Prepared]) -> None:
        keys = {(p.item.channel, p.item.external_id) for p in items if p.item.external_id}
        keys |= {("email", ref) for p in items if p.item.channel == "email" for ref in p.item.references}
        if keys:
            rows = self.connection.execute(_SEEN_ANY, {"channels": list({k[0] for k in keys}), "external_ids": list({k[1] for k in keys})}).all()
            self.seen = {(r.channel, r.external_id): Ingested(r.id, r.conversation_id, r.customer_id) for r in rows if (r.channel, r.external_id) in keys}
        senders = {(p.kind, p.address) for p in items}
        self.owners = dict.fromkeys(senders)
        params = {"kinds": list({k for k, _ in senders}), "addresses": list({a for _, a in senders})}
        for row in self.connection.execute(_OWNERS_ANY, params).all():
            if (row.kind, row.address) in senders:
                self.owners[(row.kind, row.address)] = self._follow_merges(row.id, row.merged_into)
        customers = list({c for c in self.owners.values() if c is not None})
        if customers:
            self._load_open_conversations(customers, list({p.item.channel for p in items}), self.connection.execute)
            self._load_customer_rows(self._may_start_conversations(items), self.connection.execute)
        self._prefetch_contacts(items, customers)

    def _may_start_conversations(self, items: Sequence[_Prepared]) -> list[str]:
        """Known customers whose message may open a new conversation: no open one on its channel, or an
        email or chat (threaded by subject or session). The change log re-announces those customers."""
        found = set()
        for p in items:
            customer_id = self.owners.get((p.kind, p.address))
            if customer_id is None:
                continue
            if not self.open_conversations(customer_id, p.item.channel) or p.item.channel in ("email", "chat"):
                found.add(customer_id)
        return list(found)

    def _prefetch_contacts(self, items: Sequence[_Prepared], customers: list[str]) -> None:
        """Who owns the contacts the messages name, and the merge suggestions already made between them."""
        contacts = {contact for p in items for contact in p.contacts}
        if not contacts:
            return
        self.contact_owners = dict.fromkeys(contacts)
        params = {"kinds": list({k for k, _ in contacts}), "addresses": list({a for _, a in contacts})}
        for row in self.connection.execute(_CONTACT_OWNERS_ANY, params).all():
            if (row.kind, row.address) in contacts:
                self.contact_owners[(row.kind, row.address)] = row.customer_id
        owners = {c for c in self.contact_owners.values() if c is not None}
        if owners:
            rows = self.connection.execute(_SUGGESTED_ANY, {"customer_ids": list(owners | set(customers))})
            self.suggested = {(row.customer_id, row.other_id) for row in rows}

    def _load_open_conversations(self, customers: list[str], channels: list[str], execute: Callable[..., sa.CursorResult]) -> None:
        """The open conversations of these customers on these channels (only the channels the batch's messages
        came by: an item only threads into a conversation on its own channel)."""
        for row in execute(_OPEN_OF_CUSTOMERS, {"customer_ids": customers, "channels": channels}).mappings().all():  # one fetch
            self.adopt(row)
        self._loaded_on.update(itertools.product(customers, channels))

    def _load_customer_rows(self, customers: list[str], execute: Callable[..., sa.CursorResult]) -> None:
        """Their rows, identities and merge suggestions, for the change log of a new conversation."""
        if not customers:
            return
        params = {"customer_ids": customers}
        self.customers.update({row["id"]: (row, []) for row in execute(_CUSTOMERS_ANY, params).mappings().all()})
        for row in execute(_IDENTITIES_ANY, params).mappings().all():
            self.customers[row["customer_id"]][1].append(row)
        for row in execute(_SUGGESTIONS_OF_ANY, params).mappings().all():
            for customer_id in {row["customer_id"], row["other_id"]} & set(customers):
                self.suggestions[customer_id].append(row)

    def customer_rows(self, customer_id: str) -> tuple[Any, list[Any]]:
        """(customer row, identity rows); (None, []) for a customer that does not exist."""
        if customer_id not in self.customers:
            self._load_customer_rows([customer_id], self.query)
        return self.customers.get(customer_id, (None, []))

    def _follow_merges(self, customer_id: str, merged_into: str | None) -> str | None:
        """The customer a merged one now lives in (None: a broken chain, as if the sender were new)."""
        seen = {customer_id}
        while merged_into:
            row = self.connection.execute(_MERGED_INTO, {"id": merged_into}).first()
            if row is None:
                return None
            if row.id in seen:  # a merge cycle must not hang the writer
                break
            seen.add(row.id)
            customer_id, merged_into = row.id, row.merged_into
        return customer_id

    def adopt(self, row: Any) -> SimpleNamespace:
        """The batch's one object for this conversation row (the one already held wins: it may be newer)."""
        held = self.conversations.get(row["id"])
        if held is None:
            held = self.conversations[row["id"]] = SimpleNamespace(**row)
            self.of_customer[held.customer_id].append(held)
        return held

    def open_conversations(self, customer_id: str, channel: str) -> list[SimpleNamespace]:
        """The customer's conversations on `channel` not closed (as of this item: the batch's changes count),
        loaded once."""
        if customer_id not in self._loaded and (customer_id, channel) not in self._loaded_on:  # e.g. found by following a merge
            self._load_open_conversations([customer_id], [channel], self.query)
        return [c for c in self.of_customer[customer_id] if c.channel == channel and c.status != "closed"]

    def add_customer(self, customer: dict[str, Any], identity: dict[str, Any]) -> None:
        self.add(_CUSTOMER, customer)
        self.add(_IDENTITY, identity)
        self.owners[(identity["kind"], identity["address"])] = customer["id"]
        if (identity["kind"], identity["address"]) in self.contact_owners:  # named by another message of the batch
            self.contact_owners[(identity["kind"], identity["address"])] = customer["id"]
        self.customers[customer["id"]] = (customer, [identity])
        self._loaded.add(customer["id"])  # nothing else of theirs exists

    def query(self, statement: sa.Executable, params: dict[str, Any]) -> sa.CursorResult:
        """An item's own read: the batch's queued writes are sent first, so it sees them."""
        self.flush()
        return self.connection.execute(statement, params)

    # writes

    def add(self, table: sa.Table, row: dict[str, Any]) -> None:
        self._pending[table].append(row)

    def add_conversation(self, row: dict[str, Any]) -> SimpleNamespace:
        conversation = self.adopt(row)
        self._unsaved.add(conversation.id)
        return conversation

    def changed(self, conversation: SimpleNamespace) -> None:
        if conversation.id not in self._unsaved:
            self._dirty.add(conversation.id)

    def flush(self) -> None:
        """Send the queued writes: parents first (customers, identities, conversations), then the rest."""
        pending = self._pending
        if self._unsaved:
            pending[_CONVERSATION] = [vars(self.conversations[i]) for i in self._unsaved]
        for table in (_CUSTOMER, _IDENTITY, _CONVERSATION):
            if pending[table]:
                self.connection.execute(_INSERT[table], pending[table])
                pending[table] = []
        self._unsaved.clear()
        if self._dirty:
            updates = [{"conversation_id": i, **{name: getattr(self.conversations[i], name) for name in _TOUCHED}} for i in self._dirty]
            self.connection.execute(_UPDATE_CONVERSATION, updates)
            self._dirty.clear()
        for table in (_INTERACTION, _SUGGESTION):
            if pending[table]:
                self.connection.execute(_INSERT[table], pending[table])
                pending[table] = []
        self.rotation.written()

    def finish(self) -> None:
        self.flush()
        self.rotation.finish()
        insert_changes(self.connection, self.changes)


# ------------------------------------------------------------------------------------------- one item


def _store(batch: _Batch, prepared: _Prepared) -> Ingested:
    """Store one item in the batch. Reads and decides first: a refusal (routing.NoTeam) comes before
    anything is written."""
    item = prepared.item
    if item.external_id and (seen := batch.seen.get((item.channel, item.external_id))) is not None:
        return Ingested(seen.interaction_id, seen.conversation_id, seen.customer_id, duplicate=True)
    at = _utc(item.occurred_at) if item.occurred_at else utcnow()
    customer_id = batch.owners.get((prepared.kind, prepared.address))
    conversation = _thread(batch, item, customer_id) if customer_id else None
    team = routing.choose_team(batch.session, item.channel, f"{item.subject or ''}\n{item.text}") if conversation is None else None
    if customer_id is None:
        customer_id = _new_customer(batch, prepared)
    if conversation is None:
        conversation = batch.add_conversation(_new_conversation(batch, item, customer_id, team, at))
        batch.changes.extend(_customer_changes(batch, customer_id))  # the team may be new to this customer
    if not item.auto_reply:
        if conversation.status != "open":
            was_working = conversation.status in routing.WORKING
            conversation.status, conversation.snooze_until, conversation.closed_at = "open", None, None
            if not was_working and conversation.assignee_id:  # back in its agent's load
                batch.rotation.now_working(conversation.assignee_id, conversation.channel)
        sla.on_inbound(batch.session, conversation, at)
    conversation.last_message_at = max(conversation.last_message_at, at)
    conversation.updated_at = utcnow()
    conversation.version += 1
    batch.changed(conversation)
    interaction = new_row(
        Interaction, id=new_id(), conversation_id=conversation.id, customer_id=customer_id, channel=item.channel,
        direction="inbound", text=item.text, subject=item.subject, meta={**item.metadata, "address": prepared.address},
        external_id=item.external_id, occurred_at=at,
    )
    batch.add(_INTERACTION, interaction)
    result = Ingested(interaction["id"], conversation.id, customer_id)
    if item.external_id:
        batch.seen[(item.channel, item.external_id)] = result
    batch.changes.append(upsert_change("interactions", interaction, conversation.team_id))
    batch.changes.append(upsert_change("conversations", vars(conversation)))
    _suggest_merges(batch, customer_id, prepared)
    return result


def _utc(moment: datetime) -> datetime:
    """A sender's timestamp; one without a zone is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _new_customer(batch: _Batch, prepared: _Prepared) -> str:
    """A customer for a new sender, with the sender's identity (announced with the new conversation)."""
    name = prepared.item.name
    display = (name or "").strip() or prepared.address
    customer = new_row(Customer, id=new_id(), display_name=display, first_name=display.split()[0] if name and name.split() else "")
    identity = new_row(Identity, id=new_id(), customer_id=customer["id"], kind=prepared.kind, address=prepared.address)
    batch.add_customer(customer, identity)
    return customer["id"]


def _customer_changes(batch: _Batch, customer_id: str) -> list[dict[str, Any]]:
    """Re-announce a customer, their identities and merge suggestions (changes.record_customer: a team that
    gains a customer has its cursor past the customer's old changes). Suggestions made by this batch are
    announced already (_suggest_merges)."""
    customer, identities = batch.customer_rows(customer_id)
    if customer is None:
        return []
    return [
        upsert_change("customers", customer), *(upsert_change("identities", i) for i in identities),
        *(upsert_change("merge_suggestions", s) for s in batch.suggestions.get(customer_id, ())),
    ]


def _thread(batch: _Batch, item: Inbound, customer_id: str) -> SimpleNamespace | None:
    """The existing conversation this interaction continues, if any."""
    mine = batch.open_conversations(customer_id, item.channel)
    if item.channel == "email":
        for ref in item.references:  # only the sender's own thread: a known Message-ID is not a key to others'
            parent = batch.seen.get(("email", ref))
            if parent is not None and parent.customer_id == customer_id:
                return _conversation(batch, parent.conversation_id)
        subject = thread_subject(item.subject)
        if subject:
            # An auto-reply answers something already sent, so a closed conversation counts too.
            candidates = _all_of(batch, customer_id, item.channel) if item.auto_reply else _newest_first(mine)
            return next((c for c in candidates if thread_subject(c.subject) == subject), None)
        return None
    if item.channel == "chat":
        if not item.thread_key:
            return None
        row = batch.query(_BY_THREAD_KEY, {"customer_id": customer_id, "channel": "chat", "thread_key": item.thread_key}).mappings().first()
        return batch.adopt(row) if row is not None else None
    # SMS and WhatsApp join the open conversation on their channel; every call lands on the voice one.
    return next(iter(_newest_first(mine)), None)


def _newest_first(conversations: list[SimpleNamespace]) -> list[SimpleNamespace]:
    return sorted(conversations, key=lambda c: c.last_message_at, reverse=True)


def _conversation(batch: _Batch, conversation_id: str) -> SimpleNamespace | None:
    held = batch.conversations.get(conversation_id)
    if held is not None:
        return held
    row = batch.query(_CONVERSATION_BY_ID, {"id": conversation_id}).mappings().first()
    return batch.adopt(row) if row is not None else None


def _all_of(batch: _Batch, customer_id: str, channel: str) -> list[SimpleNamespace]:
    """The customer's conversations on `channel`, closed ones too, newest first (the batch's copies win)."""
    rows = batch.query(_ALL_BY_RECENCY, {"customer_id": customer_id, "channel": channel}).mappings().all()
    return _newest_first([batch.adopt(row) for row in rows])


def thread_subject(subject: str | None) -> str:
    """A subject without its Re:/Fwd: chain, case and spacing, for threading by subject."""
    return " ".join(_SUBJECT_PREFIX.sub("", subject or "").split()).lower()


def _new_conversation(batch: _Batch, item: Inbound, customer_id: str, team: Any, at: datetime) -> dict[str, Any]:
    """A routed conversation's row (version 1, not yet written): the caller applies the message to it."""
    agent_id = None if item.auto_reply else batch.rotation.choose(team, item.channel)
    row = new_row(
        Conversation, id=new_id(), customer_id=customer_id, channel=item.channel, team_id=team.id,
        assignee_id=agent_id, subject=item.subject, thread_key=item.thread_key, created_at=at, last_message_at=at,
    )
    if item.auto_reply:  # a bounce or out-of-office with nothing to thread on: on the timeline, not in a queue
        row.update(status="closed", assignee_id=None, closed_at=at)
    return row


def _suggest_merges(batch: _Batch, customer_id: str, prepared: _Prepared) -> None:
    """Contacts named in the message (a signature, a pre-chat form) that belong to someone else."""
    item = prepared.item
    for kind, address in prepared.contacts:
        owner = batch.contact_owners.get((kind, address))
        if owner is None or owner == customer_id:
            continue
        pair = first, other = tuple(sorted((customer_id, owner)))
        if pair not in batch.suggested:
            where = "an email signature" if item.channel == "email" else f"a {item.channel} message"
            suggestion = new_row(
                MergeSuggestion, id=new_id(), customer_id=first, other_id=other,
                reason=f"The {kind} {address} appears in {where} and belongs to the other customer.",
            )
            batch.add(_SUGGESTION, suggestion)
            batch.suggested.add(pair)
            batch.changes.append(upsert_change("merge_suggestions", suggestion))


# ------------------------------------------------------------------------------------------- group commit


def _store_queued(session: Session, batch: Sequence[_Prepared]) -> list[Outcome]:
    return _store_batch(session, batch, INGEST_ATTEMPTS)


def _writer_for(engine: sa.Engine) -> GroupCommit:
    """This engine's inbound writer: concurrent messages share a transaction (server/group_commit.py)."""
    return writer_for(engine, _store_queued, name="agentdesk-inbound-writer")
