"""The queue's queries: tabs, filters and sorts over the cache, a window at a time (raw sqlite3, hot path).

Each tab and sort walks an index in display order (store/schema.py INDEXES), so a window costs its LIMIT
rows plus the OFFSET skipped inside the index, whatever the queue's length.

Tabs, as an agent reads them:
- Mine: open and pending conversations assigned to me. Snoozed ones are out of sight until the server wakes
  them (that is what snoozing is for), closed ones are done; pending stays, as it is still the agent's to follow.
- Unassigned: open and pending, nobody's, in my teams: the work to pick up.
- Team: everything open and pending in my teams, whoever has it.
- All: everything the cache holds, closed and snoozed included.
A `status:` filter replaces the tab's open-and-pending rule (Mine with `status:snoozed` lists my snoozed ones).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentdesk.store.cache import Cache, Identity

TABS = ("mine", "unassigned", "team", "all")
TAB_NAMES = {"mine": "Mine", "unassigned": "Unassigned", "team": "Team", "all": "All"}
SORTS = ("sla", "newest", "priority")
SORT_NAMES = {"sla": "SLA due", "newest": "newest", "priority": "priority"}
FILTER_KEYS = ("channel", "status", "priority", "tag")
FILTER_VALUES = {
    "channel": ("email", "sms", "whatsapp", "chat", "phone"),
    "status": ("open", "pending", "snoozed", "closed"),
    "priority": ("urgent", "high", "normal", "low"),
}

ACTIVE = "c.status IN ('open', 'pending')"
# Sort keys: the same expressions as in the indexes (SQLite matches index expressions by their text's tree).
SLA_KEY = "ifnull(c.sla_due, '~')"  # no SLA last ('~' sorts after any ISO time)
PRIORITY_KEY = "CASE c.priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'low' THEN 3 ELSE 2 END"
ORDER = {  # each sort's terms, (expression, direction)
    "sla": ((SLA_KEY, ""), ("c.last_message_at", " DESC"), ("c.id", "")),
    "newest": (("c.last_message_at", " DESC"), ("c.id", " DESC")),
    "priority": ((PRIORITY_KEY, ""), (SLA_KEY, ""), ("c.last_message_at", " DESC"), ("c.id", "")),
}
ORDER_BY = {sort: ", ".join(f"{expr}{way}" for expr, way in terms) for sort, terms in ORDER.items()}
# The same orders backwards (SQLite walks the sort's index from its end)
ORDER_BY_REVERSED = {sort: ", ".join(f"{expr}{' DESC' if not way else ''}" for expr, way in terms) for sort, terms in ORDER.items()}


@dataclass(frozen=True)
class QueueRow:
    id: str
    channel: str
    status: str
    priority: str
    customer_id: str
    customer_name: str
    preview: str
    last_message_at: str
    sla_due: str | None
    assignee_id: str | None
    assignee_name: str | None = None
    unread: bool = False


@dataclass(frozen=True)
class Filters:
    """What the agent narrowed the queue to; each key holds the values any of which may match."""

    channel: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    tag: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return any(getattr(self, key) for key in FILTER_KEYS)

    def text(self) -> str:
        """The filter as the agent would type it: `channel:sms,email tag:vip`."""
        return " ".join(f"{key}:{','.join(values)}" for key in FILTER_KEYS if (values := getattr(self, key)))


FILTER_HINT = "channel:sms priority:high tag:vip status:pending (empty clears)"


def parse_filters(text: str) -> Filters:
    """`key:value[,value]` words (keys channel, status, priority, tag); ValueError says what is wrong."""
    found: dict[str, list[str]] = {}
    for word in text.lower().split():
        key, sep, values = word.partition(":")
        if not sep or key not in FILTER_KEYS or not values:
            raise ValueError(f"{word!r}: write key:value with a key among {', '.join(FILTER_KEYS)}.")
        for value in filter(None, values.split(",")):
            allowed = FILTER_VALUES.get(key)
            if allowed is not None and value not in allowed:
                raise ValueError(f"{key} is one of {', '.join(allowed)}, not {value!r}.")
            if not value.isprintable():
                raise ValueError("A tag cannot contain control or invisible characters.")
            found.setdefault(key, []).append(value)
    return Filters(**{key: tuple(dict.fromkeys(values)) for key, values in found.items()})


@dataclass(frozen=True)
class QueueView:
    tab: str = "mine"
    filters: Filters = field(default_factory=Filters)
    sort: str = "sla"

    def next_tab(self, delta: int) -> QueueView:
        return replace(self, tab=TABS[(TABS.index(self.tab) + delta) % len(TABS)])

    def next_sort(self) -> QueueView:
        return replace(self, sort=SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)])


def _where(me: Identity, view: QueueView, walk: bool = False) -> tuple[str, list[Any]]:
    """The view's WHERE clause. With `walk` (a window's query), the tab's and status terms are kept off the
    indexes (a unary +), so SQLite walks the sort's covering index in display order and stops after the
    window, rather than sorting the whole tab; a count uses them to read just the tab's range of queue_counts."""
    teams = ", ".join("?" for _ in me.team_ids) or "NULL"
    p = "+" if walk else ""
    tab = {
        "mine": (f"{p}c.assignee_id = ?", [me.agent_id]),
        "unassigned": (f"{p}c.team_id IN ({teams}) AND {p}c.assignee_id IS NULL", list(me.team_ids)),
        "team": (f"{p}c.team_id IN ({teams})", list(me.team_ids)),
        "inbox": (f"({p}c.assignee_id = ? OR ({p}c.assignee_id IS NULL AND {p}c.team_id IN ({teams})))", [me.agent_id, *me.team_ids]),
        "all": ("1", []),
    }
    clause, params = tab[view.tab]
    terms, f = [clause], view.filters
    if f.status:
        terms.append(f"{p}c.status IN ({', '.join('?' for _ in f.status)})")
        params += f.status
    elif view.tab != "all":
        terms.append(p + ACTIVE)
    for key in ("channel", "priority"):
        if values := getattr(f, key):
            terms.append(f"c.{key} IN ({', '.join('?' for _ in values)})")
            params += values
    if f.tag:  # the conversation's own tags (the ones `t` sets); a customer's tags are on the card
        tag_terms, tag_params = has_tag("c.tags", f.tag)
        terms.append(f"({tag_terms})")
        params += tag_params
    return " AND ".join(terms), params


def has_tag(column: str, tags: tuple[str, ...]) -> tuple[str, list[str]]:
    """`column` (JSON text of a tag list) holds one of `tags`. A plain substring test first, so most rows are
    turned down without parsing JSON; the exact test only runs on the few that contain the word."""
    marks = ", ".join("?" for _ in tags)
    exact = f"EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid({column}) THEN {column} END) WHERE value IN ({marks}))"
    if not all(tag.isascii() and tag.isprintable() and '"' not in tag and "\\" not in tag for tag in tags):
        return exact, list(tags)  # stored escaped in JSON (\u00e9…): no substring shortcut
    quick = " OR ".join(f"instr({column}, ?)" for _ in tags)
    return f"({quick}) AND {exact}", [*tags, *tags]


def count(db: sqlite3.Connection, me: Identity, view: QueueView, cap: int | None = None) -> int:
    """How many conversations the view lists; with `cap`, stops counting there (for the other tabs' labels)."""
    where, params = _where(me, view)
    if cap is None:
        return db.execute(f"SELECT count(*) FROM conversations c WHERE {where}", params).fetchone()[0]
    query = f"SELECT count(*) FROM (SELECT 1 FROM conversations c WHERE {where} LIMIT ?)"
    return db.execute(query, [*params, cap]).fetchone()[0]


def rows(
    db: sqlite3.Connection, me: Identity, view: QueueView, offset: int = 0, limit: int = 100, total: int | None = None
) -> list[QueueRow]:
    """One window of the view, in its sort order. The window's rows are found by the index walk alone (the
    OFFSET skips index entries, nothing else); names, previews and unread state are read for those rows only.
    The walk passes every index entry before the window, the tab's or not (36 ms to Mine's end at 100k
    conversations): given the view's `total`, a window in the second half is walked to from the end instead."""
    where, params = _where(me, view, walk=True)
    select = f"SELECT c.rowid FROM conversations c WHERE {where} ORDER BY"
    if total is not None and offset > total // 2:
        skip = max(0, total - offset - limit)  # the window, counted from the end
        query = f"{select} {ORDER_BY_REVERSED[view.sort]} LIMIT ? OFFSET ?"
        order = [rowid for (rowid,) in db.execute(query, [*params, max(0, total - offset - skip), skip])][::-1]
    else:
        query = f"{select} {ORDER_BY[view.sort]} LIMIT ? OFFSET ?"
        order = [rowid for (rowid,) in db.execute(query, [*params, limit, offset])]
    if not order:
        return []
    found = db.execute(
        f"""
        SELECT c.rowid, c.id, c.channel, c.status, c.priority, c.customer_id, coalesce(cu.display_name, '?'),
               (SELECT i.text FROM interactions i WHERE i.conversation_id = c.id ORDER BY i.occurred_at DESC LIMIT 1),
               c.last_message_at, c.sla_due, c.assignee_id, a.name,
               s.conversation_id IS NULL OR c.last_message_at > s.last_message_at
        FROM conversations c
        LEFT JOIN customers cu ON cu.id = c.customer_id
        LEFT JOIN agents a ON a.id = c.assignee_id
        LEFT JOIN seen s ON s.conversation_id = c.id
        WHERE c.rowid IN ({", ".join("?" for _ in order)})
        """,
        order,
    ).fetchall()
    by_rowid = {row[0]: QueueRow(*row[1:7], row[7] or "", *row[8:12], bool(row[12])) for row in found}
    return [by_rowid[rowid] for rowid in order if rowid in by_rowid]


def tab_counts(db: sqlite3.Connection, me: Identity, view: QueueView, cap: int, current: int | None = None) -> dict[str, int]:
    """Each tab's count under the view's filters: the current tab exactly (or `current`, already counted),
    the others up to `cap`."""
    counts = {tab: count(db, me, replace(view, tab=tab), cap) for tab in TABS if tab != view.tab}
    counts[view.tab] = count(db, me, view) if current is None else current
    return counts


def mark_seen(cache: Cache, conversation_id: str) -> bool:
    """Record that the agent has read the conversation up to its last message (one small transaction, and
    only when that moved: re-opening a read conversation writes nothing)."""
    row = cache.db.execute(
        "SELECT c.last_message_at, s.last_message_at, s.conversation_id IS NOT NULL FROM conversations c"
        " LEFT JOIN seen s ON s.conversation_id = c.id WHERE c.id = ?",
        (conversation_id,),
    ).fetchone()
    if row is None or (row[2] and row[0] == row[1]):
        return False
    with cache.write() as db:
        db.execute("INSERT OR REPLACE INTO seen (conversation_id, last_message_at) VALUES (?, ?)", (conversation_id, row[0]))
    return True
