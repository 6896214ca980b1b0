"""Small, rarely changing rows kept in memory per database: SLA policies, team calendars, routing rules,
integration tokens, and the agent (with their teams) behind an agent token. The inbound path reads them for every message; they change when declared config is
applied at start or when an admin edits them.

A cached value is dropped
- at once when this process commits an ORM change to one of the watched tables (every writer of them —
  server/declared.py, server/admin.py, the admin routes, the tests — goes through the ORM), and
- after its time to live anyway, for a change made by another process (the admin CLI on the same SQLite
  file, another server on PostgreSQL). A version check against the database would cost a query per
  read, which is what the cache saves; a few seconds of staleness is harmless for configuration, and the
  token cache uses a shorter life so a revocation from another process holds within two seconds.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from itertools import chain
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from agentdesk.server.models import Agent, AgentTeam, ApiToken, RoutingRule, SlaPolicy, Team

CONFIG_TTL_SECONDS = 5.0
WATCHED = (Agent, AgentTeam, ApiToken, RoutingRule, SlaPolicy, Team)
_MAX_ENTRIES = 10_000  # per database; valid tokens are the only open-ended key

T = TypeVar("T")

_generation = 0  # bumped by every commit that changed a watched row in this process
_entries: weakref.WeakKeyDictionary[sa.Engine, dict[Any, tuple[int, float, Any]]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def cached(bind: sa.Engine | sa.Connection, key: Any, load: Callable[[], T], *, ttl: float = CONFIG_TTL_SECONDS) -> T:
    """The value cached under `key` for this database, or `load()`'s, then kept for `ttl` seconds (a None
    is not kept: an unknown token, say, is looked up again each time, and cannot fill the cache)."""
    value = peek(bind, key)
    if value is not None:
        return value
    generation = _generation  # read before loading: a commit during the load leaves the result stale, not current
    value = load()
    if value is not None:
        with _lock:
            table = _entries.setdefault(bind.engine, {})
            if len(table) >= _MAX_ENTRIES:
                table.clear()
            table[key] = (generation, time.monotonic() + ttl, value)
    return value


def peek(bind: sa.Engine | sa.Connection, key: Any) -> Any:
    """The value cached under `key` if it is still good, else None (without loading anything)."""
    entry = _entries.get(bind.engine, {}).get(key)
    if entry is not None and entry[0] == _generation and time.monotonic() < entry[1]:
        return entry[2]
    return None


def teams(session: Session) -> dict[str, Team]:
    """Every team by id, in the database's order of names (detached copies: read only). Bookkeeping that
    changes per message, like the round-robin position, must be read from the database, not from here."""
    def load() -> dict[str, Team]:
        table = Team.__table__  # type: ignore[attr-defined]
        return {row["id"]: Team(**row) for row in session.execute(sa.select(table).order_by(table.c.name)).mappings()}

    return cached(session.get_bind(), "teams", load)


def generation() -> int:
    """A number that changes whenever this process commits a change to a watched table."""
    return _generation


def forget_all() -> None:
    """Drop every cached value (what a commit touching a watched table does)."""
    global _generation
    with _lock:
        _generation += 1


_PRESENCE_ONLY = frozenset({"presence", "presence_at"})  # an agent's availability: not what the caches hold


def _note_watched_writes(session: Session, _flush_context: object) -> None:
    if any(isinstance(obj, WATCHED) for obj in chain(session.new, session.deleted)) or any(
        isinstance(obj, WATCHED) and not _presence_only(obj) for obj in session.dirty
    ):
        session.info["config_changed"] = True


def _presence_only(obj: object) -> bool:
    """An agent row whose only change is its presence (every desk start, stop and away toggle)."""
    if not isinstance(obj, Agent):
        return False
    changed = {attr.key for attr in sa.inspect(obj).attrs if attr.history.has_changes()}
    return changed <= _PRESENCE_ONLY


def _after_commit(session: Session) -> None:
    # After the commit, not at the flush: a reader loading between the two would cache the old rows as new.
    if session.info.pop("config_changed", False):
        forget_all()


def _after_rollback(session: Session) -> None:
    session.info.pop("config_changed", None)


sa.event.listen(Session, "after_flush", _note_watched_writes)
sa.event.listen(Session, "after_commit", _after_commit)
sa.event.listen(Session, "after_soft_rollback", lambda session, _previous: _after_rollback(session))
