"""Shared fixtures: a real server on a loopback port over a real database, and a small two-team world."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from sqlmodel import SQLModel, select

from agentdesk.domain.clock import utcnow
from agentdesk.server.admin import add_agent, add_team
from agentdesk.server.app import create_app
from agentdesk.server.auth import issue_token, new_id
from agentdesk.server.db import make_engine, migrate, session
from agentdesk.server.models import Conversation, Customer, Identity, Interaction
from agentdesk.server.run import bind


@dataclass
class World:
    """Two teams, an agent in each, customers and conversations on both sides."""

    tokens: dict[str, str] = field(default_factory=dict)  # agent email -> token
    agents: dict[str, str] = field(default_factory=dict)  # agent email -> id
    teams: dict[str, str] = field(default_factory=dict)  # team name -> id
    conversations: dict[str, str] = field(default_factory=dict)  # label -> id
    customers: dict[str, str] = field(default_factory=dict)  # label -> id


@dataclass
class LiveServer:
    url: str
    engine: sa.Engine
    world: World

    def interactions(self, text: str) -> list[Interaction]:
        with session(self.engine) as db:
            return list(db.exec(select(Interaction).where(Interaction.text == text)))


def build_world(engine: sa.Engine, hostile: list[str] | None = None) -> World:
    world = World()
    now = utcnow()
    with session(engine) as db:
        for team in ("Billing", "Support"):
            world.teams[team] = add_team(db, team).id
        for name, email, team in (("Alice Ward", "alice@example.com", "Billing"), ("Bob Stone", "bob@example.com", "Support")):
            agent = add_agent(db, name, email, team)
            world.agents[email] = agent.id
            world.tokens[email] = issue_token(db, agent)
        db.commit()
        people = [("maria", "María López"), ("ken", "Ken Adams")] + [(f"hostile{i}", h) for i, h in enumerate(hostile or [])]
        for index, (label, name) in enumerate(people):
            customer = Customer(id=new_id(), display_name=name, first_name=name.split()[0] if name.split() else "")
            db.add(customer)
            db.add(Identity(id=new_id(), customer_id=customer.id, kind="email", address=f"{label}@customer.test"))
            db.add(Identity(id=new_id(), customer_id=customer.id, kind="phone", address=f"+1415555{index:04d}"))
            world.customers[label] = customer.id
            db.flush()  # no ORM relationships, so parents are flushed before children by hand
            team = "Support" if label == "ken" else "Billing"
            for channel, offset in (("email", 120), ("sms", 30)):
                conversation = Conversation(
                    id=new_id(), customer_id=customer.id, channel=channel, team_id=world.teams[team],
                    subject=name if label.startswith("hostile") else f"{channel} about the invoice",
                    sla_due=now + timedelta(minutes=offset - 60), last_message_at=now - timedelta(minutes=offset),
                )
                db.add(conversation)
                world.conversations[f"{label}-{channel}"] = conversation.id
                db.add(Interaction(
                    id=new_id(), conversation_id=conversation.id, customer_id=customer.id, channel=channel,
                    direction="inbound", text=name if label.startswith("hostile") else f"Hello from {name} by {channel}",
                    occurred_at=now - timedelta(minutes=offset),
                ))
        db.commit()
    return world


def get_once_up(url: str, headers: dict[str, str], timeout: float = 20) -> httpx.Response:
    """GET `url` from a server still starting in another process, retrying until it accepts connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, headers=headers)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"nothing answered at {url}"
            time.sleep(0.1)


class PromptServer(uvicorn.Server):
    """A uvicorn server that begins to stop as soon as `should_exit` is set: uvicorn's own main loop looks at
    it every 0.1 s, ~50 ms on average of each of the suite's hundreds of server stops."""

    _wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value and self._wake is not None:
            loop, event = self._wake
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(event.set)

    async def main_loop(self) -> None:
        self._wake = (asyncio.get_running_loop(), asyncio.Event())
        counter = 0
        while not await self.on_tick(counter):  # uvicorn's loop, woken early by should_exit
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake[1].wait(), 0.1)


def start_uvicorn(app: FastAPI, **config: Any) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Serve `app` on a free loopback port in a thread; returns its URL once it accepts requests."""
    sock = bind("127.0.0.1", 0)
    server = PromptServer(uvicorn.Config(app, **{"log_level": "warning", **config}))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def start_server(engine: sa.Engine, world: World) -> tuple[LiveServer, uvicorn.Server, threading.Thread]:
    url, server, thread = start_uvicorn(create_app(engine))
    return LiveServer(url, engine, world), server, thread


# The server tests run on SQLite, and also on PostgreSQL when AGENTDESK_TEST_POSTGRES_URL names one.
POSTGRES_URL = os.environ.get("AGENTDESK_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]
BOTH_BACKENDS_UNDER = ("server", "sync")  # test folders whose tests run on every backend


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_engine" in metafunc.fixturenames and metafunc.definition.path.parent.name in BOTH_BACKENDS_UNDER:
        metafunc.parametrize("db_backend", BACKENDS, indirect=True)


@pytest.fixture(autouse=True)
def _garbage_collector_left_on():
    """The desk pauses Python's garbage collector around a key's frame (tui/widgets/lines.py paint_first): no
    test may end with it still off (the rest of the run would pile up garbage)."""
    yield
    assert gc.isenabled(), "the test left Python's garbage collector disabled"


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


def postgres_schema_url(schema: str) -> str:
    """The test database URL with its search_path set to `schema`."""
    url = sa.engine.make_url(POSTGRES_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite database per run, copied for each test (migrating each time costs ~0.1 s)."""
    path = tmp_path_factory.mktemp("template") / "server.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def postgres_schema() -> str:
    """A fresh schema for this run, migrated once; each test then starts from empty tables."""
    schema = f"adk_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(postgres_schema_url(schema))
    migrate(engine)
    engine.dispose()
    yield schema
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


# Each test starts from empty tables and sequences (the log's seq from 1). DELETE, children first, rather than
# TRUNCATE: these tables hold a few rows, and TRUNCATE gives each table and index a new file (~0.3 s a test).
_EMPTY_POSTGRES_SCHEMA = "".join(f'DELETE FROM "{t.name}";' for t in reversed(SQLModel.metadata.sorted_tables)) + (
    "SELECT setval(c.oid, 1, false) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'S' AND n.nspname = current_schema();"
)


@pytest.fixture
def db_engine(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> sa.Engine:
    if db_backend == "sqlite":
        path = tmp_path / "server.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        engine = make_engine(f"sqlite:///{path}")
    else:
        engine = make_engine(postgres_schema_url(request.getfixturevalue("postgres_schema")))
        with engine.begin() as connection:
            connection.exec_driver_sql(_EMPTY_POSTGRES_SCHEMA)
    yield engine
    engine.dispose()


@pytest.fixture
def live_server(db_engine: sa.Engine, request: pytest.FixtureRequest):
    hostile = getattr(request, "param", None)
    world = build_world(db_engine, hostile)
    live, server, thread = start_server(db_engine, world)
    yield live
    server.should_exit = True
    thread.join(timeout=10)
