"""A desk's first load as one SQLite file (GET /api/v1/sync/snapshot): every row the caller may see, in the
bootstrap pages' shape (the same columns, visibility rule and wire text).

The desk attaches the file and copies the rows in with `INSERT … SELECT`: no JSON to make or parse on either
side, which was most of a paged bootstrap's cost (bench/sync_bench.py). The file is read in one transaction, so
it is one consistent view of the database, and its cursor (the change log's head, read first) is where the
desk's pull starts. A SQLite server writes the file by itself (ATTACH and `INSERT … SELECT`); a PostgreSQL
server's rows are fetched in batches and written with `executemany`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa

from agentdesk.server.models import Change, Conversation, Interaction
from agentdesk.server.wire import ENTITIES


class NoRoom(Exception):
    """The temp directory has no room for a snapshot: the desk loads the pages instead."""


@dataclass
class Snapshot:
    file: BinaryIO  # open for reading, its name already gone: the room is freed when it is closed, sent or not
    head: int  # the change-log position it shows
    size: int


KEEP_FREE = 64 << 20  # room in the temp directory a snapshot never takes (the server's own files may be there)


class _Room:
    """The bytes snapshots being written may still take, so that two made at once do not both count on the
    same free room (a desk asks for two files at once; many desks may start together)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.promised = 0

    @contextmanager
    def held(self, directory: Path, needed: int) -> Iterator[None]:
        with self.lock:
            free = shutil.disk_usage(directory).free - self.promised - KEEP_FREE
            if free < needed:
                raise NoRoom(f"{max(free, 0) >> 20} MB free in {directory} (after {KEEP_FREE >> 20} MB kept and the snapshots being made), less than the {needed >> 20} MB its rows could take")
            self.promised += needed
        try:
            yield
        finally:
            with self.lock:
                self.promised -= needed


_room = _Room()


def available(engine: sa.Engine) -> bool:
    """PostgreSQL through psycopg (its server-side cursor), or SQLite in a file (one to attach: an in-memory
    database's desks load the pages)."""
    if engine.dialect.name == "postgresql":
        return engine.dialect.driver in ("psycopg", "psycopg2")
    return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")


def make(engine: sa.Engine, queries: Mapping[str, tuple[list[str], sa.Select]]) -> Snapshot:
    """A new snapshot (see `build`) in the temp directory, open and already unlinked, so nothing is left behind
    however its request ends, even before its answer starts.

    Raises NoRoom, leaving nothing behind, where the directory has less room than the rows could take (see
    `_room_needed`, less what other snapshots being written may take) or fills up while the file is written:
    a disk filled by a snapshot would fail the server's own writes, while the pages need no disk at all."""
    handle, name = tempfile.mkstemp(prefix="agentdesk-snapshot-", suffix=".sqlite3")
    os.close(handle)
    path = Path(name)
    try:
        with _room.held(path.parent, _room_needed(engine, list(queries))):
            head = build(engine, queries, path)
        file = path.open("rb")
        return Snapshot(file, head, os.fstat(file.fileno()).st_size)
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_FULL:
            raise
        raise NoRoom(f"{path.parent} filled up while the snapshot was written") from exc
    finally:
        path.unlink(missing_ok=True)


HEAD = sa.select(sa.func.coalesce(sa.func.max(Change.seq), 0))  # the change-log position a snapshot shows


def build(engine: sa.Engine, queries: Mapping[str, tuple[list[str], sa.Select]], path: Path) -> int:
    """Write each entity's rows (`queries`: entity -> (its columns, the SELECT of them)) into a new SQLite file
    at `path`; the change-log position the file shows everything up to. The rows are not sorted: on SQLite they
    come in the order the visibility rule's index finds them (the messages by conversation). Sorting by id
    would cost the server twice the query (bench/sync_bench.py), and the desk's own index builds are faster on
    rows grouped by conversation than on rows in id order."""
    return (_attach_and_copy if engine.dialect.name == "sqlite" else _fetch_and_write)(engine, queries, path)


def _attach_and_copy(engine: sa.Engine, queries: Mapping[str, tuple[list[str], sa.Select]], path: Path) -> int:
    """SQLite: the server's database copies the rows into the attached file itself, in one read transaction."""
    db = sqlite3.connect(engine.url.database, isolation_level=None, timeout=30)  # type: ignore[arg-type]
    try:
        db.execute("ATTACH DATABASE ? AS snapshot", (str(path),))
        db.execute("PRAGMA snapshot.journal_mode=OFF")  # a new file, thrown away if this fails
        db.execute("PRAGMA snapshot.synchronous=OFF")
        db.execute("BEGIN")
        head = db.execute(*_sql(engine, HEAD)).fetchone()[0]
        for entity, (names, query) in queries.items():
            db.execute(f"CREATE TABLE snapshot.{entity} ({', '.join(names)})")
            sql, params = _sql(engine, query)
            db.execute(f"INSERT INTO snapshot.{entity} ({', '.join(names)}) {sql}", params)
        db.execute("COMMIT")
        db.execute("DETACH DATABASE snapshot")
        return head
    finally:
        db.close()


def _fetch_and_write(engine: sa.Engine, queries: Mapping[str, tuple[list[str], sa.Select]], path: Path) -> int:
    """PostgreSQL: the rows fetched in batches by a server-side cursor of the driver's own (SQLAlchemy's rows
    would cost three times the fetch), in one REPEATABLE READ transaction so every entity and the head come
    from one view of the database; each batch written with `executemany`."""
    out = sqlite3.connect(path, isolation_level=None)
    try:
        out.execute("PRAGMA journal_mode=OFF")  # a new file, thrown away if this fails
        out.execute("PRAGMA synchronous=OFF")
        out.execute("BEGIN")
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as db, db.begin():
            head = db.execute(HEAD).scalar_one()
            driver = db.connection.dbapi_connection
            for entity, (names, query) in queries.items():
                out.execute(f"CREATE TABLE {entity} ({', '.join(names)})")
                insert = f"INSERT INTO {entity} VALUES ({', '.join('?' for _ in names)})"
                compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
                with driver.cursor(name=f"snapshot_{entity}") as rows:  # type: ignore[union-attr, call-arg]
                    rows.execute(str(compiled), compiled.params)
                    while batch := rows.fetchmany(10000):
                        out.executemany(insert, batch)
        out.execute("COMMIT")
        return head
    finally:
        out.close()


def _room_needed(engine: sa.Engine, entities: list[str]) -> int:
    """What a snapshot of these entities may take: the SQLite database's whole file; on PostgreSQL, the size of
    those tables' rows there (without their indexes), twice over: the rows' text is longer on the wire (times
    as ISO text), and PostgreSQL may keep long text compressed."""
    if engine.dialect.name == "sqlite":
        return Path(engine.url.database).stat().st_size  # type: ignore[arg-type]
    tables = [ENTITIES[entity].__tablename__ for entity in entities]
    with engine.connect() as db:
        size = sa.text("SELECT coalesce(sum(pg_table_size(to_regclass(name))), 0) FROM unnest(CAST(:tables AS text[])) AS name")
        return 2 * int(db.execute(size, {"tables": tables}).scalar_one())


def chunks(file: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    """The snapshot's bytes, for a streamed answer; the file is closed after them (or, if the answer never
    starts, when the file object goes)."""
    with file:
        while block := file.read(size):
            yield block


def interactions_visible(teams: list[str]) -> sa.ColumnElement[bool]:
    """The interactions of the caller's teams' conversations."""
    return Interaction.conversation_id.in_(sa.select(Conversation.id).where(Conversation.team_id.in_(teams)))  # type: ignore[attr-defined]


def _sql(engine: sa.Engine, query: sa.Select) -> tuple[str, list]:
    """The statement as SQLite text and its parameters, in order."""
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    return str(compiled), [compiled.params[name] for name in compiled.positiontup or ()]
