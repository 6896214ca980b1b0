"""Engine and schema for the server database (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, SQLModel

from agentdesk.server import models  # noqa: F401  (registers the tables)


def make_engine(url: str, *, echo: bool = False) -> sa.Engine:
    if url.startswith("sqlite"):
        db_path = sa.engine.make_url(url).database
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        # An unbounded pool: a bounded one can run dry while requests holding connections wait for worker
        # threads, deadlocking against the thread limit. Pooled, not opened per request: closing the last
        # connection of a WAL database checkpoints it (milliseconds).
        memory = not db_path or db_path == ":memory:"
        pool: dict = {"poolclass": sa.pool.StaticPool} if memory else {"pool_size": 20, "max_overflow": -1}
        engine = sa.create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}, **pool)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # More connections than the worker threads (40) that can hold one at a time, so none waits forever.
    return sa.create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=50)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API objects
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x61646B6D  # "adkm"


def _alembic_config(connection: sa.Connection):  # noqa: ANN202 - alembic is imported lazily
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: sa.Engine) -> None:
    """Create or upgrade the schema to the newest migration (what the server does on start)."""
    from alembic import command

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # two servers starting at once migrate one after the other
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        command.upgrade(_alembic_config(connection), "head")


def new_migration(engine: sa.Engine, message: str) -> None:
    """Developers: write a migration for what the models have and the database has not (autogenerate)."""
    from alembic import command

    with engine.begin() as connection:
        command.revision(_alembic_config(connection), message=message, autogenerate=True)


def create_schema(engine: sa.Engine) -> None:
    """The tables without migration history, for a throwaway database (the demo's): faster to start."""
    SQLModel.metadata.create_all(engine)


def session(engine: sa.Engine) -> Session:
    return Session(engine, expire_on_commit=False)
