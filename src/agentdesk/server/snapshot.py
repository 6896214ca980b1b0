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
from collections.abc import Iterator, Mapping
from pathlib import Path

import sqlalchemy as sa

from agentdesk.server.models import Change, Conversation, Interaction
from agentdesk.server.wire import ENTITIES


class NoRoom(Exception):
    """The temp directory has no room for a snapshot: the desk loads the pages instead."""


def available(engine: sa.Engine) -> bool:
    """PostgreSQL, or SQLite in a file (one to attach: an in-memory database's desks load the pages)."""
    return engine.dialect.name == "postgresql" or (engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"))


def make(engine: sa.Engine, queries: Mapping[str, tuple[list[str], sa.Select]]) -> tuple[Path, int]:
    """A new snapshot file in the temp directory (see `build`) and the change-log position it shows.

    Raises NoRoom, leaving nothing behind, where the directory has less room than the rows could take (see
    `_room_needed`) or fills up while the file is written: a disk filled by a snapshot would fail the server's
    own writes, while the pages need no disk at all."""
    handle, name = tempfile.mkstemp(prefix="agentdesk-snapshot-", suffix=".sqlite3")
    os.close(handle)
    path = Path(name)
    try:
        free, needed = shutil.disk_usage(path.parent).free, _room_needed(engine, list(queries))
        if free < needed:
            raise NoRoom(f"{free >> 20} MB free in {path.parent}, less than the {needed >> 20} MB its rows could take")
        return path, build(engine, queries, path)
    except sqlite3.OperationalError as exc:
        path.unlink(missing_ok=True)
        if exc.sqlite_errorcode != sqlite3.SQLITE_FULL:
            raise
        raise NoRoom(f"{path.parent} filled up while the snapshot was written") from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise


HEAD = sa.select(sa.func.coalesce(sa.func.max(Change.seq), 0))  # the change-log position a snapshot shows


def build(engine: sa.Engine, queries: Mapping[str, tuple[list[str], sa.Select]], path: Path) -> int:
    """Write each entity's rows (`queries`: entity -> (its columns, the SELECT of them)) into a new SQLite file
    at `path`; the change-log position the file shows everything up to. The rows are written in the order the
    visibility rule's index finds them (the messages by conversation): sorting by id would cost the server
    twice the query (bench/sync_bench.py), and the desk's own index builds are faster on rows grouped by
    conversation than on rows in id order."""
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
    """At most what a snapshot of these entities takes: the SQLite database's file; on PostgreSQL, its tables'
    rows (without their indexes), which take more room there than in a SQLite file."""
    if engine.dialect.name == "sqlite":
        return Path(engine.url.database).stat().st_size  # type: ignore[arg-type]
    tables = [ENTITIES[entity].__tablename__ for entity in entities]
    with engine.connect() as db:
        size = sa.text("SELECT coalesce(sum(pg_table_size(to_regclass(name))), 0) FROM unnest(CAST(:tables AS text[])) AS name")
        return int(db.execute(size, {"tables": tables}).scalar_one())


def chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    """The file's bytes, for a streamed answer. The name is gone once the file is open (the data stays until
    it is closed), so a request that ends early leaves nothing behind."""
    with path.open("rb") as file:
        path.unlink()
        while block := file.read(size):
            yield block


def interactions_visible(teams: list[str]) -> sa.ColumnElement[bool]:
    """The interactions of the caller's teams' conversations."""
    return Interaction.conversation_id.in_(sa.select(Conversation.id).where(Conversation.team_id.in_(teams)))  # type: ignore[attr-defined]


def _sql(engine: sa.Engine, query: sa.Select) -> tuple[str, list]:
    """The statement as SQLite text and its parameters, in order."""
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    return str(compiled), [compiled.params[name] for name in compiled.positiontup or ()]
