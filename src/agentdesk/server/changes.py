"""The change log: every domain write records its change in the same session, hence transaction.

Each change carries a visibility scope, read by pull (routes/sync.py):
- conversations and interactions: the conversation's team, and only while the conversation is still
  in one of the caller's teams (a delete tells the old team when it moves);
- customers, identities and merge suggestions: the customer, seen by every team holding one of the
  customer's conversations (a suggestion: both of its customers);
- teams, agents and memberships: everyone.

On PostgreSQL, sequence values can commit out of order (seq 9 may commit after seq 10), and a pull that
read 10 would then skip 9 forever. So every writing transaction takes one transaction-level advisory lock
before it records a change: writers of the log commit in seq order. On SQLite, which has one writer at a
time anyway, the transaction takes the write lock up front, so its reads cannot go stale before it writes.
Either way a writer that calls `begin_write` first sees no concurrent write between its reads and commit.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, select

from agentdesk.domain.clock import utcnow
from agentdesk.server.models import (
    Change,
    Conversation,
    Customer,
    Identity,
    Interaction,
    MergeSuggestion,
    UTCDateTime,
)
from agentdesk.server.wire import ENTITIES, ENTITY_OF, columns, wire_value

_CHANGE_LOG_LOCK = 0x61646B  # "adk": the advisory lock key that orders change-log writers on PostgreSQL


def begin_write(session: Session) -> None:
    """Call first in a transaction that will record changes (before taking row locks, so no deadlock)."""
    connection = session.connection()  # begins the transaction if none is open
    transaction = session.get_transaction()
    if session.info.get("change_log_transaction") is transaction:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHANGE_LOG_LOCK})
    elif connection.dialect.name == "sqlite":
        _queue_for_sqlite_writes(session, transaction, connection.engine.url.database or "")
        connection.exec_driver_sql("DELETE FROM server_state WHERE 0")  # a write: BEGIN + the write lock, now
    session.info["change_log_transaction"] = transaction


_sqlite_writers: dict[str, threading.Lock] = defaultdict(threading.Lock)  # database file -> its writer's turn


def _queue_for_sqlite_writes(session: Session, transaction: object, database: str) -> None:
    """Writers of this process take turns on a lock that wakes the next at once; left to SQLite's busy
    handler, they would poll with sleeps of up to 100 ms each and pile up under load."""
    turn = _sqlite_writers[database]
    turn.acquire()
    session.info["sqlite_turn"] = (transaction, turn)
    if not sa.event.contains(session, "after_transaction_end", _end_sqlite_turn):  # once per session, not per write
        sa.event.listen(session, "after_transaction_end", _end_sqlite_turn)


def _end_sqlite_turn(session: Session, ended: object) -> None:
    held = session.info.get("sqlite_turn")
    if held is not None and held[0] is ended:
        del session.info["sqlite_turn"]
        held[1].release()


def scope(entity: str, row: Mapping[str, Any], conversation_team_id: str | None = None) -> dict[str, str | None]:
    """Where a change to this row of `entity` may be seen (the rules in this module's docstring); an
    interaction takes the team of its conversation, given as `conversation_team_id`."""
    if entity == "conversations":
        return {"team_id": row["team_id"], "conversation_id": row["id"]}
    if entity == "interactions":
        return {"team_id": conversation_team_id, "conversation_id": row["conversation_id"]}
    if entity == "customers":
        return {"customer_id": row["id"]}
    if entity == "identities":
        return {"customer_id": row["customer_id"]}
    if entity == "merge_suggestions":
        return {"customer_id": row["customer_id"], "other_customer_id": row["other_id"]}
    return {}


_COLUMNS = {entity: columns(entity) for entity in ENTITIES}
_TIMES = {  # the columns that hold datetimes: the rest go on the wire as they are
    entity: [c.name for c in model.__table__.columns if isinstance(c.type, UTCDateTime)]  # type: ignore[attr-defined]
    for entity, model in ENTITIES.items()
}
_NO_SCOPE = dict.fromkeys(("team_id", "customer_id", "agent_id", "conversation_id", "other_customer_id"))
_INSERT_CHANGE = Change.__table__.insert()  # type: ignore[attr-defined]


def upsert_change(entity: str, row: Mapping[str, Any], conversation_team_id: str | None = None) -> dict[str, Any]:
    """The change-log row recording an upsert of `row` (all of `entity`'s columns, as Python values)."""
    data = {name: row[name] for name in _COLUMNS[entity]}
    for name in _TIMES[entity]:  # (the inbound path writes thousands of these a second)
        data[name] = wire_value(data[name])
    return {"entity": entity, "entity_id": row["id"], "op": "upsert", "data": data, "created_at": utcnow(),
            **_NO_SCOPE, **scope(entity, row, conversation_team_id)}


def insert_changes(connection: sa.Connection, changes: list[dict[str, Any]]) -> None:
    """Write change-log rows made by `upsert_change`, in order, in the caller's writing transaction (begin_write)."""
    if changes:
        connection.execute(_INSERT_CHANGE, changes)


def record_upsert(session: Session, obj: SQLModel) -> None:
    """Add `obj` to the session and write its change-log entry (committed together by the caller)."""
    begin_write(session)
    session.add(obj)
    entity = ENTITY_OF[type(obj)]
    team_id = None
    if isinstance(obj, Interaction):
        conversation = session.get(Conversation, obj.conversation_id)
        team_id = conversation.team_id if conversation else None
    values = {name: getattr(obj, name) for name in _COLUMNS[entity]}
    # A Core insert, not a Change object: the log row needs none of the unit of work's bookkeeping.
    insert_changes(session.connection(), [upsert_change(entity, values, team_id)])


def record_delete(session: Session, entity: str, entity_id: str, *, team_id: str | None = None) -> None:
    """Tell the agents of `team_id` that a row left their view (a transfer) or is gone."""
    begin_write(session)
    session.connection().execute(_INSERT_CHANGE, {
        "entity": entity, "entity_id": entity_id, "op": "delete", "data": None, "created_at": utcnow(),
        **_NO_SCOPE, "team_id": team_id,
    })


def suggestions_of(customer_id: str) -> sa.ColumnElement[bool]:
    """A filter: the merge suggestions pairing this customer with another (either side)."""
    return sa.or_(MergeSuggestion.customer_id == customer_id, MergeSuggestion.other_id == customer_id)  # type: ignore[arg-type]


def record_customer(session: Session, customer_id: str) -> None:
    """Re-announce a customer, their identities and merge suggestions, e.g. to a team that just got their
    first conversation.

    Pull filters by who may see a customer *now*, but a team that gains a customer later has its cursor
    past the customer's old changes, so they are recorded again. A suggestion reaches the teams that see
    both of its customers (pull's scope rule): seeing this one may be what they lacked.
    """
    customer = session.get(Customer, customer_id)
    if customer is None:
        return
    record_upsert(session, customer)
    for identity in session.exec(select(Identity).where(Identity.customer_id == customer_id)):
        record_upsert(session, identity)
    for suggestion in session.exec(select(MergeSuggestion).where(suggestions_of(customer_id)).order_by(MergeSuggestion.id)):
        record_upsert(session, suggestion)


def record_customer_left(session: Session, customer_id: str, team_ids: set[str]) -> None:
    """Teams that lost sight of a customer (no conversation of theirs left there) drop them, their
    identities, and the merge suggestions naming them (a suggestion needs both customers in view)."""
    if not team_ids:
        return
    identity_ids = list(session.exec(select(Identity.id).where(Identity.customer_id == customer_id)))
    suggestion_ids = list(session.exec(select(MergeSuggestion.id).where(suggestions_of(customer_id))))
    for team_id in sorted(team_ids):
        record_delete(session, "customers", customer_id, team_id=team_id)
        for entity, ids in (("identities", identity_ids), ("merge_suggestions", suggestion_ids)):
            for entity_id in ids:
                record_delete(session, entity, entity_id, team_id=team_id)


def record_conversation_moved(session: Session, conversation: Mapping[str, Any], old_team_id: str) -> None:
    """A conversation (its row, as written) changed team: the old team drops it, the new one receives it whole."""
    record_delete(session, "conversations", conversation["id"], team_id=old_team_id)
    insert_changes(session.connection(), [upsert_change("conversations", conversation)])
    for interaction in session.exec(select(Interaction).where(Interaction.conversation_id == conversation["id"])):
        record_upsert(session, interaction)
    record_customer(session, conversation["customer_id"])
