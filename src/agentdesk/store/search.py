"""Full-text search over the cache: every interaction (text, subject) and customer (name, addresses).

The index is SQLite FTS5 in external-content tables over the mirror tables (schema.SEARCH_INDEX), so no text
is stored twice; it is built once after the bootstrap load and kept current by triggers.

A query is free words plus filters (`parse_query`). Words reach FTS5 only as quoted runs of letters and
digits, so nothing the agent types is read as FTS5 syntax or SQL; filter values are bound parameters.

Order: newest first. Bootstrap rows arrive in id or conversation order (not time order), so FTS5's rowid order
is not time order; where at most `EXACT_LIMIT` interactions match, they are sorted by time (cheap); past that, hits come
most-recently-synced first (`ORDER BY rowid DESC`, which FTS5 walks without sorting) and
`SearchResults.newest_first` is False, so the desk can say "many matches: add words to narrow".
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agentdesk.domain.clock import to_iso, utcnow
from agentdesk.domain.text import clean_line
from agentdesk.store.queue import has_tag

CHANNELS = ("email", "sms", "whatsapp", "chat", "phone")
STATUSES = ("open", "pending", "snoozed", "closed")
KINDS = {  # is:<kind> -> a fixed SQL condition on the interaction
    "note": "i.direction = 'note'",
    "inbound": "i.direction = 'inbound'",
    "outbound": "i.direction = 'outbound'",
    "failed": "i.delivery_status = 'failed'",
}
FILTERS = ("channel", "from", "status", "before", "after", "tag", "is")
EXACT_LIMIT = 1000  # up to this many matching interactions are sorted by time; past it, by rowid
CUSTOMER_HITS = 5  # customers shown before the interactions (matched by name or address)
MIN_PREFIX = 3  # letters before the word being typed becomes a prefix (short prefixes are slow in FTS5)
DATE_HINT = "use 2026-10-01, 2026-10, today, yesterday, 7d, 12h or 2w"
NOT_READY = "The search index is built when the first sync finishes."

# Letters and digits: what the FTS5 unicode61 tokenizer keeps as tokens (everything else separates them).
_TOKEN = re.compile(r"[^\W_]+")
_PART = re.compile(r'(?:([A-Za-z]+):)?(?:"([^"]*)"?|(\S+)|(?<=:)(?=\s|$))')  # the last: "name:" with no value
_RELATIVE = re.compile(r"(\d{1,4})([hdw])")


# --- the query language -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    words: tuple[str, ...] = ()  # the agent's words (letters and digits only), to highlight in snippets
    match: str | None = None  # the FTS5 expression: quoted tokens joined by AND
    channels: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()
    before: str | None = None  # ISO, exclusive
    after: str | None = None  # ISO, inclusive
    problems: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.match is None and not self.filtered

    @property
    def filtered(self) -> bool:
        return bool(self.channels or self.statuses or self.kinds or self.tags or self.senders or self.before or self.after)


def fts_term(tokens: Sequence[str], prefix: bool = False) -> str:
    """A quoted FTS5 phrase of tokens (letters and digits only, so the quotes cannot be broken)."""
    body = " ".join(tokens).replace('"', '""')
    return f'"{body}"' + ("*" if prefix else "")


def parse_when(value: str, now: datetime) -> datetime | None:
    """A day (2026-10-01), month (2026-10), year, today/yesterday or an age (7d, 12h, 2w) as an aware time;
    calendar dates start at local midnight (of `now`'s zone). None when unreadable."""
    local = now.astimezone()
    text = value.strip().lower()
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if text == "today":
        return midnight
    if text == "yesterday":
        return midnight - timedelta(days=1)
    if m := _RELATIVE.fullmatch(text):
        unit = {"h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        try:
            return local - timedelta(**{unit: int(m.group(1))})
        except OverflowError:  # 99999999w
            return None
    for fmt in ("%Y-%m-%d", "%Y-%m", "%Y"):
        try:
            when = datetime.strptime(text, fmt).replace(tzinfo=local.tzinfo)
        except ValueError:
            continue
        return when if 1970 <= when.year <= 9000 else None  # year 1 in a zone ahead of UTC cannot become UTC
    return None


def _choices(name: str, value: str, allowed: Sequence[str], problems: list[str], what: str = "") -> tuple[str, ...]:
    picked = tuple(v.strip().lower() for v in value.split(",") if v.strip())
    if bad := [v for v in picked if v not in allowed]:
        problems.append(f"{name}:{clean_line(bad[0], 30)} — not a {what or name}: use {', '.join(allowed)}")
        return ()
    return picked


def parse_query(text: str, *, now: datetime | None = None, typing: bool = False) -> Query:
    """Words and filters: `refund channel:sms,email status:open from:+1415 tag:vip is:note before:2026-10-01
    after:7d "exact phrase"`. Unknown `name:` prefixes are plain words. With `typing`, the last word (if the
    text does not end in a space and it has MIN_PREFIX letters) matches as a prefix; `word*` always does."""
    now = now or utcnow()
    terms: list[str] = []
    words: list[str] = []
    found: dict[str, list[str]] = {name: [] for name in ("channels", "statuses", "kinds", "tags", "senders")}
    bounds: dict[str, str] = {}
    problems: list[str] = []
    parts = list(_PART.finditer(text))
    for index, part in enumerate(parts):
        name, quoted, bare = part.group(1), part.group(2), part.group(3)
        value = quoted if quoted is not None else bare or ""
        if name and name.lower() in FILTERS:
            _filter(name.lower(), value.strip(), now, found, bounds, problems)
            continue
        if name:  # "re:", "http:", "10:30": words like any other
            value = f"{name}:{value}"
        tokens = _TOKEN.findall(value)
        if not tokens:
            continue
        last = index == len(parts) - 1 and not text[-1:].isspace()
        prefix = quoted is None and (
            (value.endswith("*") and len(tokens[-1]) >= 2) or (typing and last and len(tokens[-1]) >= MIN_PREFIX)
        )
        terms.append(fts_term(tokens, prefix))
        words.extend(tokens)
    return Query(
        words=tuple(words), match=" AND ".join(terms) or None,
        channels=tuple(found["channels"]), statuses=tuple(found["statuses"]), kinds=tuple(found["kinds"]),
        tags=tuple(found["tags"]), senders=tuple(found["senders"]),
        before=bounds.get("before"), after=bounds.get("after"), problems=tuple(problems),
    )


def _filter(name: str, value: str, now: datetime, found: dict[str, list[str]], bounds: dict[str, str], problems: list[str]) -> None:
    if not value:
        problems.append(f"{name}: needs a value, e.g. " + {
            "channel": "channel:sms", "from": "from:+1415 or from:ana@example.com", "status": "status:open",
            "before": "before:2026-10-01", "after": "after:7d", "tag": "tag:vip", "is": "is:note",
        }[name])
    elif name == "channel":
        found["channels"] += _choices(name, value, CHANNELS, problems)
    elif name == "status":
        found["statuses"] += _choices(name, value, STATUSES, problems)
    elif name == "is":
        found["kinds"] += _choices("is", value, tuple(KINDS), problems, "kind of message")
    elif name == "tag":
        found["tags"].append(value.lower())
    elif name == "from":
        found["senders"].append(value)
    else:  # before / after
        when = parse_when(value, now)
        if when is None:
            problems.append(f"{name}:{clean_line(value, 30)} — not a date: {DATE_HINT}")
        else:
            bounds[name] = to_iso(when)


# --- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchHit:
    kind: str  # "interaction" | "customer"
    interaction_id: str | None
    conversation_id: str | None  # a customer hit: their latest conversation (None if they have none)
    customer_id: str
    channel: str | None
    occurred_at: str | None
    customer_name: str  # untrusted
    snippet: str  # untrusted, already one clean line; `highlights` are (start, end) spans in it
    highlights: tuple[tuple[int, int], ...] = ()
    direction: str | None = None


class SearchResults(list):
    """A window of hits, with `has_more` (another window follows), `newest_first` (False: too many matches
    to sort by time, so most recently synced first) and `problems` (the query's errors, for the agent)."""

    def __init__(self, hits: Sequence[SearchHit] = (), *, has_more: bool = False, newest_first: bool = True,
                 problems: Sequence[str] = ()) -> None:
        super().__init__(hits)
        self.has_more = has_more
        self.newest_first = newest_first
        self.problems = tuple(problems)


def snippet(text: object, words: Sequence[str], width: int = 160) -> tuple[str, tuple[tuple[int, int], ...]]:
    """One clean line of `text` around the first word that matches (at a word start, any case), cut to
    `width`, and the spans of every match in it. Cleaning comes first, so the spans are in the shown text."""
    line = clean_line(text)
    if not words:
        return clean_line(line, width), ()
    pattern = re.compile(
        r"(?<![^\W_])(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + r")[^\W_]*", re.IGNORECASE
    )
    first = pattern.search(line)
    start = 0
    if first and first.start() > width // 3:
        start = line.rfind(" ", 0, first.start() - width // 4) + 1 or first.start() - width // 4
    lead = "…" if start > 0 else ""
    body = line[start: start + width - len(lead)]
    cut = start + len(body) < len(line)
    if cut:
        body = body[:-1] + "…"
    shown = lead + body
    spans = tuple((m.start(), m.end()) for m in pattern.finditer(shown) if not (cut and m.end() >= len(shown)))
    return shown, spans


# --- running a query ------------------------------------------------------------------------------------


class _NoSender(Exception):
    """from:<value> matches no one: the search has no hits, and says why."""


MAX_SENDERS = 2000  # customers a from: may match (past that, the agent is asked to type more)


def _conditions(db: sqlite3.Connection, q: Query) -> tuple[list[str], list[Any], bool]:
    """SQL conditions for the filters (on `i` interactions, `c` conversations, `cu` customers), their
    parameters, and whether the conversation and customer must be joined."""
    where: list[str] = []
    params: list[Any] = []
    if q.channels:
        where.append(f"i.channel IN ({', '.join('?' for _ in q.channels)})")
        params += q.channels
    if q.kinds:
        where.append("(" + " OR ".join(KINDS[k] for k in q.kinds) + ")")
    if q.statuses:
        where.append(f"c.status IN ({', '.join('?' for _ in q.statuses)})")
        params += q.statuses
    for tag in q.tags:  # the conversation's or the customer's
        on_conversation, conversation_params = has_tag("c.tags", (tag,))
        on_customer, customer_params = has_tag("cu.tags", (tag,))
        where.append(f"(({on_conversation}) OR ({on_customer}))")
        params += conversation_params + customer_params
    if q.after:
        where.append("i.occurred_at >= ?")
        params.append(q.after)
    if q.before:
        where.append("i.occurred_at < ?")
        params.append(q.before)
    if q.senders:
        customers, agents = _senders(db, q.senders)
        ors = []
        if customers:  # a json_each list, so interactions_customer serves it
            ors.append("(i.customer_id IN (SELECT value FROM json_each(?)) AND i.direction = 'inbound')")
            params.append(json.dumps(customers))
        if agents:
            ors.append("(i.author_id IN (SELECT value FROM json_each(?)) AND i.direction != 'inbound')")
            params.append(json.dumps(agents))
        where.append("(" + " OR ".join(ors) + ")")
    return where, params, bool(q.statuses or q.tags)


def _prefix_range(prefix: str) -> tuple[str, str]:
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _senders(db: sqlite3.Connection, values: Sequence[str]) -> tuple[list[str], list[str]]:
    """from:<value>s as (customer ids, agent ids): customers with an identity address starting with it (a
    phone prefix: +1415…) or a name starting with its words, and agents whose name contains it."""
    customers: set[str] = set()
    agents: set[str] = set()
    for value in values:
        text = value.strip().lower()
        if re.fullmatch(r"\+?[\d\s().-]{3,}", text):
            text = "+" + re.sub(r"\D", "", text)  # a phone number or prefix, as identities keep them (E.164)
        tokens = _TOKEN.findall(value)
        found = {r for (r,) in db.execute(
            "SELECT customer_id FROM identities WHERE address >= ? AND address < ?"
            " UNION SELECT x.id FROM customers_fts JOIN customers x ON x.rowid = customers_fts.rowid WHERE customers_fts MATCH ?"
            " LIMIT ?",
            (*_prefix_range(text), fts_term(tokens, prefix=True) if tokens else '""', MAX_SENDERS + 1),
        )}
        if len(found) > MAX_SENDERS:
            raise _NoSender(f"from:{clean_line(value, 30)} — matches too many customers: type more of it")
        like = "%" + re.sub(r"([%_\\])", r"\\\1", value.strip()) + "%"
        named = {r for (r,) in db.execute("SELECT id FROM agents WHERE name LIKE ? ESCAPE '\\'", (like,))}
        if not found and not named:
            raise _NoSender(f"from:{clean_line(value, 30)} — no customer address or name, and no agent, matches it")
        customers |= found
        agents |= named
    return sorted(customers), sorted(agents)


_HIT_COLUMNS = "i.id, i.conversation_id, i.customer_id, i.channel, i.direction, i.occurred_at, i.text, i.subject, cu.display_name"


def _and(where: Sequence[str]) -> str:
    return "".join(" AND " + w for w in where)


def _interaction_hits(db: sqlite3.Connection, q: Query, offset: int, limit: int) -> tuple[list[tuple], bool]:
    """(rows, newest_first) for the window [offset, offset + limit). First the newest EXACT_LIMIT + 1 matching
    rowids (FTS5 alone for words; filters only: a rowid-descending scan): when that is all of them, they are
    sorted by time; otherwise the window is taken in rowid order. CROSS JOIN keeps SQLite from driving the
    search from a filter's index (a status matches a quarter of the cache)."""
    where, params, joined = _conditions(db, q)
    joins = (" CROSS JOIN conversations c ON c.id = i.conversation_id"
             " LEFT JOIN customers cu ON cu.id = i.customer_id") if joined else ""
    if q.match is not None:
        source, match = "interactions_fts CROSS JOIN interactions i ON i.rowid = interactions_fts.rowid", [q.match]
        found = db.execute(
            "SELECT rowid FROM interactions_fts WHERE interactions_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
            (q.match, EXACT_LIMIT + 1),
        ).fetchall()
        exact = len(found) <= EXACT_LIMIT
        pool_where, pool_params = ("i.rowid IN (SELECT value FROM json_each(?))", [json.dumps([r for (r,) in found])])
    else:
        source, match = "interactions i", []
        pool_where, pool_params = "1", []
        # from: alone walks interactions_customer; other filters alone only a rowid-descending scan, which
        # stops at the window's end but not at EXACT_LIMIT + 1 hits (a quarter of a million lookups, say)
        if q.senders and not (q.channels or q.kinds or q.statuses or q.tags or q.before or q.after):
            found = db.execute(f"SELECT i.rowid FROM interactions i WHERE {' AND '.join(where)} LIMIT ?", [*params, EXACT_LIMIT + 1]).fetchall()
        else:
            found = [None] * (EXACT_LIMIT + 1)
        exact = len(found) <= EXACT_LIMIT
        if exact:
            pool_where, pool_params, where, params, joins = (
                "i.rowid IN (SELECT value FROM json_each(?))", [json.dumps([r for (r,) in found])], [], [], ""
            )
    if exact:  # sort the few by time, on the bare rows; names are joined for the window only
        window = db.execute(
            f"SELECT i.rowid FROM interactions i{joins} WHERE {pool_where}{_and(where)}"
            " ORDER BY i.occurred_at DESC, i.rowid DESC LIMIT ? OFFSET ?",
            [*pool_params, *params, limit, offset],
        ).fetchall()
    else:
        window = db.execute(
            f"SELECT i.rowid FROM {source}{joins} WHERE {'interactions_fts MATCH ?' if match else '1'}{_and(where)}"
            f" ORDER BY {'interactions_fts.rowid' if match else 'i.rowid'} DESC LIMIT ? OFFSET ?",
            [*match, *params, limit, offset],
        ).fetchall()
    rows = db.execute(
        f"SELECT {_HIT_COLUMNS} FROM json_each(?) w CROSS JOIN interactions i ON i.rowid = w.value"
        " LEFT JOIN customers cu ON cu.id = i.customer_id ORDER BY w.key",
        (json.dumps([r for (r,) in window]),),
    ).fetchall()
    return rows, exact


def _customer_hits(db: sqlite3.Connection, q: Query) -> list[SearchHit]:
    """Customers whose name or an address matches the words (only when no filter but tags is given)."""
    if q.match is None or q.channels or q.statuses or q.kinds or q.senders or q.before or q.after:
        return []
    tag_terms = [has_tag("cu.tags", (tag,)) for tag in q.tags]
    tag_sql = "".join(f" AND ({sql})" for sql, _ in tag_terms)
    rows = db.execute(
        f"""
        WITH ids(id) AS (
            SELECT x.id FROM customers_fts JOIN customers x ON x.rowid = customers_fts.rowid WHERE customers_fts MATCH ?1
            UNION SELECT s.customer_id FROM identities_fts JOIN identities s ON s.rowid = identities_fts.rowid
                  WHERE identities_fts MATCH ?1
            LIMIT 500
        )
        SELECT cu.id, cu.display_name,
               (SELECT group_concat(address, ' · ') FROM (SELECT address FROM identities WHERE customer_id = cu.id LIMIT 3)),
               (SELECT json_array(v.id, v.channel, v.last_message_at) FROM conversations v WHERE v.customer_id = cu.id
                 ORDER BY v.last_message_at DESC LIMIT 1)
        FROM ids JOIN customers cu ON cu.id = ids.id
        WHERE cu.merged_into IS NULL {tag_sql}
        ORDER BY cu.updated_at DESC, cu.id LIMIT {CUSTOMER_HITS}
        """,
        [q.match, *(param for _, params in tag_terms for param in params)],
    ).fetchall()
    hits = []
    for customer_id, name, addresses, latest in rows:
        conversation_id, channel, at = json.loads(latest) if latest else (None, None, None)
        text, spans = snippet(" · ".join(p for p in (name, addresses) if p), q.words)
        hits.append(SearchHit("customer", None, conversation_id, customer_id, channel, at, name or "", text, spans))
    return hits


def _interaction_hit(row: tuple, words: Sequence[str]) -> SearchHit:
    interaction_id, conversation_id, customer_id, channel, direction, at, text, subject, name = row
    shown = text if text and (not subject or _mentions(text, words) or not _mentions(subject, words)) else subject
    line, spans = snippet(shown, words)
    return SearchHit("interaction", interaction_id, conversation_id, customer_id, channel, at, name or "", line, spans, direction)


def _mentions(text: str, words: Sequence[str]) -> bool:
    folded = text.casefold()
    return any(w.casefold() in folded for w in words)


def search(db: sqlite3.Connection, query: str, *, limit: int = 50, offset: int = 0, typing: bool = False,
           now: datetime | None = None) -> SearchResults:
    """Hits for `query` (see `parse_query`), newest first: up to CUSTOMER_HITS matching customers, then the
    interactions. A bad query or a cache without its index yet gives no hits and `problems`, never raises."""
    q = parse_query(query, now=now, typing=typing)
    if q.problems or q.empty:
        return SearchResults(problems=q.problems)
    try:
        customers = _customer_hits(db, q)
        hits: list[SearchHit] = customers[offset: offset + limit]
        skip = max(0, offset - len(customers))
        want = limit - len(hits)
        rows, newest_first = _interaction_hits(db, q, skip, want + 1) if want >= 0 else ([], True)
    except _NoSender as exc:
        return SearchResults(problems=(str(exc),))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return SearchResults(problems=(NOT_READY,))
        raise
    hits += [_interaction_hit(row, q.words) for row in rows[:want]]
    return SearchResults(hits, has_more=len(rows) > want, newest_first=newest_first)
