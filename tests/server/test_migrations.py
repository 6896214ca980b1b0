"""Migrations build the schema the models describe, from an empty database, on every backend."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from agentdesk.server.db import make_engine, migrate
from conftest import POSTGRES_URL, postgres_schema_url


@pytest.fixture
def empty_database(db_backend: str, tmp_path: Path):
    """A URL to a database (SQLite) or schema (PostgreSQL) with nothing in it."""
    if db_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    schema = f"adk_empty_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield postgres_schema_url(schema)
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def schema_drift(engine: sa.Engine) -> list:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), SQLModel.metadata)


@pytest.mark.parametrize("db_backend", ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"], indirect=True)
def test_migrations_from_empty_match_the_models(empty_database):
    engine = make_engine(empty_database)
    migrate(engine)
    assert schema_drift(engine) == []
    migrate(engine)  # already current: nothing to do, no error
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()


def test_serve_migrate_only_creates_the_schema_and_exits(tmp_path):
    url = f"sqlite:///{tmp_path / 'served.sqlite3'}"
    env = {"AGENTDESK_DATABASE__URL": url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for _ in range(2):  # the second run finds the schema current
        done = subprocess.run(
            [sys.executable, "-m", "agentdesk", "serve", "--migrate-only"],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "schema is current" in done.stderr
    engine = make_engine(url)
    assert {"conversation", "change", "sla_policy", "alembic_version"} <= set(sa.inspect(engine).get_table_names())
    assert schema_drift(engine) == []
