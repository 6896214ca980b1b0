"""Windows of one customer's merged timeline, read by key from the cache.

A customer may have 100k interactions: the desk never loads them all. Every read here is a range of the
`interactions_customer (customer_id, occurred_at)` index, ordered by the position (occurred_at, id) — id breaks
ties between interactions of the same instant, so a window boundary never skips or repeats one.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

Position = tuple[str, str]  # (occurred_at, id): where an interaction sits on its customer's timeline


@dataclass(frozen=True)
class TimelineItem:
    id: str
    conversation_id: str
    channel: str
    direction: str
    author_name: str | None
    text: str
    subject: str | None
    meta: dict[str, Any]
    delivery_status: str | None
    occurred_at: str
    outbox_state: str | None  # queued | sending | failed while the item waits in the outbox
    conversation_subject: str | None = None  # for the conversation boundary heading
    conversation_status: str | None = None

    @property
    def position(self) -> Position:
        return (self.occurred_at, self.id)


# The latest outbox row of the item (an interaction may have several: a reply, then a retry or a disposition).
_SELECT = """
SELECT i.id, i.conversation_id, i.channel, i.direction, a.name, i.text, i.subject, i.meta, i.delivery_status,
       i.occurred_at,
       (SELECT o.state FROM outbox o WHERE o.entity_id = i.id ORDER BY o.seq DESC LIMIT 1),
       c.subject, c.status
FROM interactions i
LEFT JOIN agents a ON a.id = i.author_id
LEFT JOIN conversations c ON c.id = i.conversation_id
WHERE i.customer_id = ?
"""


def _meta(raw: str | None) -> dict[str, Any]:
    """Channel metadata arrives from outside: anything that is not a JSON object reads as none."""
    try:
        meta = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _items(rows: list[tuple]) -> list[TimelineItem]:
    return [TimelineItem(*r[:7], _meta(r[7]), *r[8:]) for r in rows]


class CustomerTimeline:
    """One customer's timeline in the cache, read a window at a time; every window comes back oldest first."""

    def __init__(self, db: sqlite3.Connection, customer_id: str) -> None:
        self.db = db
        self.customer_id = customer_id

    def _query(self, where: str, params: tuple, order: str, limit: int | None) -> list[TimelineItem]:
        sql = f"{_SELECT} {where} ORDER BY i.occurred_at {order}, i.id {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self.db.execute(sql, (self.customer_id, *params)).fetchall()
        if order == "DESC":
            rows.reverse()
        return _items(rows)

    def newest(self, limit: int) -> list[TimelineItem]:
        """The newest `limit` interactions."""
        return self._query("", (), "DESC", limit)

    def before(self, position: Position, limit: int) -> list[TimelineItem]:
        """Up to `limit` interactions just older than `position`."""
        at, key = position
        where = "AND i.occurred_at <= ? AND (i.occurred_at < ? OR i.id < ?)"
        return self._query(where, (at, at, key), "DESC", limit)

    def after(self, position: Position, limit: int) -> list[TimelineItem]:
        """Up to `limit` interactions just newer than `position`."""
        at, key = position
        where = "AND i.occurred_at >= ? AND (i.occurred_at > ? OR i.id > ?)"
        return self._query(where, (at, at, key), "ASC", limit)

    def between(self, first: Position, last: Position | None, limit: int) -> list[TimelineItem]:
        """Interactions from `first` to `last` inclusive (None: to the newest), at most the newest `limit`."""
        where = "AND i.occurred_at >= ? AND (i.occurred_at > ? OR i.id >= ?)"
        params: tuple = (first[0], first[0], first[1])
        if last is not None:
            where += " AND i.occurred_at <= ? AND (i.occurred_at < ? OR i.id <= ?)"
            params += (last[0], last[0], last[1])
        return self._query(where, params, "DESC", limit)

    def position_of(self, interaction_id: str) -> Position | None:
        """Where an interaction sits, if it is this customer's."""
        row = self.db.execute(
            "SELECT occurred_at, id FROM interactions WHERE id = ? AND customer_id = ?", (interaction_id, self.customer_id)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def count_between(self, first: Position, last: Position, cap: int) -> int:
        """How many interactions lie between the times of `first` and `last` (an index range), counted up
        to `cap` at most: the caller only needs to know whether they are few."""
        row = self.db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM interactions WHERE customer_id = ? AND occurred_at BETWEEN ? AND ? LIMIT ?)",
            (self.customer_id, first[0], last[0], cap),
        ).fetchone()
        return row[0]

    def all(self) -> list[TimelineItem]:
        """Every interaction, oldest first: only for small timelines (tests, exports), never the desk's view."""
        return self._query("", (), "ASC", None)
