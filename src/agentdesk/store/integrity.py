"""Opening the cache with a check: a damaged file is moved aside and rebuilt, keeping the agent's own work.

Everything the server sent (the mirror tables, the cursor) comes back with the next bootstrap; what the agent
did locally (queued replies and actions, drafts, unread markers, notices, who they are) exists nowhere else,
so it is read back row by row from the damaged file — a bad page costs only the rows on it — into a new one.

Every process that opens the cache here holds a shared lock on `<cache>.lock` while it lives; a rebuild needs it
alone, so it never moves the file away from under another desk or `agentdesk sync` (which would go on writing
queued replies into the damaged file). Where there is no `fcntl` (Windows) there is no such lock.

`PRAGMA quick_check` reads every page: ~1.4 s for a 1 GB cache (a million messages) here, too slow before the
desk's first paint. So a big file gets a check of its schema and local tables on open (~20 ms at that size)
and the full check in a background thread; damage found there is recorded beside the file, told to the agent
through the cache's notices, and repaired at the next open.
"""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from agentdesk.domain.clock import to_iso, utcnow
from agentdesk.store.cache import Cache
from agentdesk.store.schema import LOCAL_TABLES

# The local tables, as the schema declares them: one added later is kept too.
KEPT_TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", LOCAL_TABLES))
DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)  # not BUSY/LOCKED/CANTOPEN: those are no damage
FULL_CHECK_BYTES = 32 * 2**20  # up to here (~45 ms) the whole file is checked before opening
ROWID_END = 2**63 - 1
FAILED_SEEKS = 20_000  # per table, ~0.3 s: enough to step over every rowid of a few damaged pages one by one

try:
    import fcntl
except ImportError:  # Windows: no locking (see above)
    fcntl = None

_LOCKS: dict[Path, int] = {}  # cache file -> this process's open lock file, held shared


def open_checked(path: Path | str) -> tuple[Cache, str | None]:
    """The cache at `path`, checked first; with a one-line message for the agent when it was damaged and has
    been replaced by a new one (which the next sync fills from the server), or could not be yet."""
    path = Path(path)
    _hold_shared_lock(path)
    big = path.exists() and path.stat().st_size > FULL_CHECK_BYTES
    damage = _known_damage(path, big)
    message = None
    if damage:
        with _lock_alone(path) as alone:
            if alone:
                message = rebuild(path, damage)
                damage_marker(path).unlink(missing_ok=True)
            else:
                damage_marker(path).write_text(damage)  # so that the next open rebuilds, whatever its size
                message = (
                    f"The local cache is damaged ({damage}); close every other agentdesk window or command using it"
                    " and start again to rebuild it (queued replies and drafts are kept)."
                )
    elif big:
        threading.Thread(target=check_in_background, args=(path,), name="agentdesk-cache-check", daemon=True).start()
    return Cache(path), message


def _known_damage(path: Path, big: bool) -> str | None:
    """What the background check recorded, or what a check finds now (of the local tables only, for a big file)."""
    marker = damage_marker(path)
    if not path.exists():  # a marker left beside a cache since removed
        marker.unlink(missing_ok=True)
        return None
    try:
        recorded = marker.read_text()
    except FileNotFoundError:
        recorded = None
    if recorded:
        return recorded
    damage = find_damage(path, KEPT_TABLES if big and recorded is None else None)  # "": cut short, check it all
    if damage is None:
        marker.unlink(missing_ok=True)
    return damage


def lock_file(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _hold_shared_lock(path: Path) -> None:
    """Hold a shared lock on the cache for the rest of this process (one lock file open per cache: two of this
    process's own would conflict)."""
    if fcntl is None or path.resolve() in _LOCKS:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file(path), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits while another process rebuilds the cache
    _LOCKS[path.resolve()] = fd


def release_lock(path: Path | str) -> None:
    """Stop holding the cache's lock: for a process done with the cache before it ends (a test playing two)."""
    fd = _LOCKS.pop(Path(path).resolve(), None)
    if fd is not None:
        os.close(fd)


@contextmanager
def _lock_alone(path: Path) -> Iterator[bool]:
    """Whether no other process holds the cache's lock; while so, none can take it."""
    fd = _LOCKS.get(path.resolve())
    if fd is None:
        yield True
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        alone = True
    except BlockingIOError:
        alone = False
    try:
        yield alone
    finally:  # shared again (even after a refusal: Linux drops the shared lock before it tries for the other)
        fcntl.flock(fd, fcntl.LOCK_SH)


def find_damage(path: Path, tables: Sequence[str] | None = None) -> str | None:
    """What is wrong with the file, in SQLite's words; None when it is sound (or not there yet). All of it is
    checked, or only its schema and those of `tables` it has (each with its indexes)."""
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, isolation_level=None)
    try:
        if tables is None:
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        else:
            present = {row[0] for row in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
            checked = ["sqlite_schema", *(table for table in tables if table in present)]
            problems = [row[0] for table in checked for row in db.execute(f"PRAGMA quick_check({table})")]
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return str(exc)
    finally:
        db.close()
    if all(problem == "ok" for problem in problems):
        return None
    first = next((line for line in "\n".join(problems).splitlines() if line not in ("ok", "*** in database main ***")), "")
    return f"integrity check: {first.strip()[:80]}"


def is_damage(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in DAMAGE_CODES


def damage_marker(path: Path) -> Path:
    """Beside the cache: why the background check found it damaged, so that the next open rebuilds it."""
    return path.with_name(path.name + ".damaged")


def check_in_background(path: Path) -> None:
    """The full check of a big cache, while the desk works: damage is repaired at the next open, and the agent
    is told now, through the notices the desk shows (a damaged file may refuse that write too)."""
    damage = find_damage(path)
    if damage is None:
        return
    damage_marker(path).write_text(damage)
    notice = f"The local cache is damaged ({damage}); restart agentdesk to rebuild it from the server (queued replies and drafts are kept)."
    db = sqlite3.connect(path, timeout=10)
    try:
        with db:
            db.execute("INSERT INTO notices (text, created_at) VALUES (?, ?)", (notice, to_iso(utcnow())))
    except sqlite3.Error:
        pass
    finally:
        db.close()


def rebuild(path: Path, damage: str) -> str:
    """Replace the damaged cache with a new one holding what could be read back of its local tables; the
    damaged file is kept beside it. Returns what happened, for the agent."""
    kept, unreadable = salvage(path)
    fresh = path.with_name(path.name + ".rebuilding")
    for stale in _with_journals(fresh):
        stale.unlink(missing_ok=True)
    cache = Cache(fresh)
    try:
        with cache.write() as db:
            for table, (columns, rows) in kept.items():
                _insert(db, table, columns, rows)
        cache.db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to rename (Cache turns WAL back on)
    finally:
        cache.close()
    aside = _aside_name(path)
    for source, target in zip(_with_journals(path), _with_journals(aside), strict=True):
        if source.exists():
            os.replace(source, target)
    os.replace(fresh, path)  # only now: a crash before this leaves the damaged file to be rebuilt next time
    return _report(damage, aside, kept, unreadable)


def salvage(path: Path) -> tuple[dict[str, tuple[list[str], list[tuple]]], set[str]]:
    """The readable rows of each kept table (by column name), and the tables where some could not be read."""
    kept: dict[str, tuple[list[str], list[tuple]]] = {}
    unreadable: set[str] = set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, isolation_level=None)
    try:
        for table in KEPT_TABLES:
            try:
                columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            except sqlite3.DatabaseError as exc:  # the schema itself is unreadable (a garbage header, say)
                _unless_damage_raise(exc)
                unreadable.add(table)
                continue
            if columns:  # an older file may lack a table
                rows, damaged = _readable_rows(db, table, columns)
                kept[table] = (columns, rows)
                if damaged:
                    unreadable.add(table)
    finally:
        db.close()
    if "sync_state" in kept:  # the cursor and the bootstrap marks belong to the mirror, which is not kept
        columns, rows = kept["sync_state"]
        kept["sync_state"] = (columns, [row for row in rows if not _mirror_state(row[0])])
    return kept, unreadable


def _mirror_state(key: str) -> bool:
    return key in ("cursor", "bootstrapped") or key.startswith(("bootstrap.", "search.built"))


def _readable_rows(db: sqlite3.Connection, table: str, columns: list[str]) -> tuple[list[tuple], bool]:
    """The readable rows in rowid order: (rows, whether some could not be read).

    A damaged page fails every read that steps onto it and every seek to a rowid it would hold. So the rowids
    not accounted for yet, one range, are narrowed from both ends in turn: read on from that end until a read
    fails; then look the next row up and read it alone (the failure may have come from the step past it); if
    even that seek fails, a damaged page holds that end's rowid: rule it out. Our rowids are dense (numbered in
    turn from 1), so that steps over a damaged page's rowids one by one; FAILED_SEEKS bounds it where they are
    not, and past the last row when the last page is damaged (it would hold every rowid after it)."""
    names = ", ".join(columns)
    found: dict[int, tuple] = {}
    low, high = 1, ROWID_END
    upward, damaged, failed_seeks = True, False, 0
    while low <= high and failed_seeks < FAILED_SEEKS:
        try:
            for rowid, *values in _select(db, table, f"rowid, {names}", low, high, upward):
                found[rowid] = tuple(values)
                low, high = (rowid + 1, high) if upward else (low, rowid - 1)
            return [found[rowid] for rowid in sorted(found)], damaged
        except sqlite3.DatabaseError as exc:
            _unless_damage_raise(exc)
        damaged = True
        try:
            next_row = _select(db, table, "rowid", low, high, upward, limit=1).fetchone()
        except sqlite3.DatabaseError as exc:
            _unless_damage_raise(exc)
            rowid, failed_seeks = (low if upward else high), failed_seeks + 1
        else:
            if next_row is None:
                break
            [rowid] = next_row
            try:
                found[rowid] = db.execute(f"SELECT {names} FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.DatabaseError as exc:
                _unless_damage_raise(exc)
        low, high = (rowid + 1, high) if upward else (low, rowid - 1)
        upward = not upward
    return [found[rowid] for rowid in sorted(found)], damaged


def _select(
    db: sqlite3.Connection, table: str, what: str, low: int, high: int, upward: bool, limit: int = -1
) -> sqlite3.Cursor:
    order = "" if upward else " DESC"
    return db.execute(
        f"SELECT {what} FROM {table} WHERE rowid BETWEEN ? AND ? ORDER BY rowid{order} LIMIT ?", (low, high, limit)
    )


def _unless_damage_raise(exc: sqlite3.DatabaseError) -> None:
    """Go on only past damage: a locked or busy file, or a failing disk, must not cost rows."""
    if not is_damage(exc):
        raise exc


def _insert(db: sqlite3.Connection, table: str, columns: list[str], rows: list[tuple]) -> None:
    """Into the new file's table, by name: the columns both have (an older damaged file may lack some)."""
    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    keep = [i for i, name in enumerate(columns) if name in present]
    names, marks = ", ".join(columns[i] for i in keep), ", ".join("?" for _ in keep)
    db.executemany(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})", ([row[i] for i in keep] for row in rows))


def _aside_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    names = (path.with_name(f"{path.name}.corrupt-{stamp}{'' if n == 0 else f'-{n}'}") for n in itertools.count())
    return next(name for name in names if not name.exists())


def _with_journals(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _report(damage: str, aside: Path, kept: dict[str, tuple[list[str], list[tuple]]], unreadable: set[str]) -> str:
    outbox, drafts = len(kept.get("outbox", ((), []))[1]), len(kept.get("drafts", ((), []))[1])
    message = (
        f"The local cache was damaged ({damage}) and is being rebuilt from the server; the damaged file is kept"
        f" as {aside}. Kept {_count(outbox, 'queued item', 'queued items')} and {_count(drafts, 'draft', 'drafts')}."
    )
    lost = [name for table, name in (("outbox", "queued items"), ("drafts", "drafts")) if table in unreadable]
    if lost:
        message += f" Some {' and '.join(lost)} could not be read back and may be lost: check what was sent."
    return message
