"""The engine on the live stream (DESIGN §5 "Live"), against real servers on loopback ports.

Engines here poll every 30 s or more while the stream is up, so anything that reaches their cache within a
few seconds came through a poke (or, where a test says so, through the fallback poll).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from agentdesk.server.admin import add_agent
from agentdesk.server.app import create_app
from agentdesk.server.auth import issue_integration_token, issue_token
from agentdesk.server.db import session
from agentdesk.server.events import Hub
from agentdesk.server.models import Interaction
from agentdesk.server.run import bind
from agentdesk.store.cache import Cache
from agentdesk.sync.client import SyncClient
from agentdesk.sync.engine import SyncEngine
from agentdesk.sync.live import backoff
from conftest import PromptServer, World, build_world

ARRIVES = 5.0  # seconds: how long a live change may take (the poll would take 30 s or more)


# --- helpers ------------------------------------------------------------------------------------------------


class SwitchableHub(Hub):
    """The real hub, which a test can make refuse streams (503) and drop the open ones, then allow again."""

    refuse = False
    plain_pokes = False  # every poke plain, as from a server that predates page pokes

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.resumes: list[int | None] = []  # per stream: the seq the client resumed from
        await super().start()

    def open_stream(self, agent_id, teams, resume, page=None, token_hash=None):  # noqa: ANN001, ANN201
        self.resumes.append(resume)
        return super().open_stream(agent_id, teams, resume, None if self.plain_pokes else page, token_hash)

    @property
    def running(self) -> bool:
        return super().running and not self.refuse

    def drop_streams(self) -> None:
        self.refuse = True
        self.loop.call_soon_threadsafe(self.close_streams)

    def allow_streams(self) -> None:
        self.loop.call_soon_threadsafe(setattr, self, "closing", False)
        self.refuse = False


@dataclass
class Served:
    url: str
    port: int
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def hub(self) -> Hub:
        return self.app.state.hub

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the server did not stop (a stream kept it open?)"


def serve(engine: sa.Engine, port: int = 0, hub: Hub | None = None) -> Served:
    """conftest.start_uvicorn, but on a chosen port (a restart reuses the first one's)."""
    app = create_app(engine, hub=hub)
    sock = bind("127.0.0.1", port)
    server = PromptServer(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the server did not start")
    port = sock.getsockname()[1]
    return Served(f"http://127.0.0.1:{port}", port, app, server, thread)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Poll `predicate` until true; returns the seconds it took, fails after `timeout`."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"{what} (after {timeout} s)"
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def world(db_engine: sa.Engine) -> World:
    return build_world(db_engine)


@pytest.fixture
def served(db_engine: sa.Engine, world: World) -> Iterator[Served]:
    live = serve(db_engine, hub=SwitchableHub(db_engine))
    yield live
    if live.thread.is_alive():
        live.stop()


@pytest.fixture
def crm_token(db_engine: sa.Engine, world: World) -> str:
    with session(db_engine) as db:
        token = issue_integration_token(db, "crm")
        db.commit()
    return token


def post_inbound(url: str, token: str, text: str) -> str:
    """An SMS from María (Billing, so Alice sees it) through the integration API; its interaction id."""
    body = {"channel": "sms", "address": "+14155550000", "text": text, "external_id": uuid.uuid4().hex}
    response = httpx.post(f"{url}/api/v1/interactions/inbound", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return response.json()["interaction_id"]


def in_cache(engine: SyncEngine, interaction_id: str) -> bool:
    db = sqlite3.connect(f"file:{engine.cache_path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT 1 FROM interactions WHERE id = ?", (interaction_id,)).fetchone() is not None
    except sqlite3.OperationalError:
        return False  # the cache's schema is not there yet
    finally:
        db.close()


def desk_engine(url: str, world: World, tmp_path, email: str = "alice@example.com", **options) -> SyncEngine:
    client = SyncClient(url, world.tokens[email], timeout=5)
    cache = Cache(tmp_path / f"{email}.sqlite3")
    cache.set_identity(client.me())
    cache.close()
    engine = SyncEngine(cache.path, client, **{"poll_interval": 30.0, "live_poll_interval": 60.0, **options})
    engine.live_backoff = (0.1, 1.0)  # reconnect within a second of the server coming back
    return engine


def settled(engine: SyncEngine) -> bool:
    """Live, and every poke so far has been followed by a finished pull (nothing pending that could carry
    the next change into the cache without a new poke)."""
    return engine.status.live and engine.caught_up


@pytest.fixture
def running() -> Iterator[list[SyncEngine]]:
    engines: list[SyncEngine] = []
    yield engines
    for engine in engines:
        engine.stop(timeout=5)


# --- tests --------------------------------------------------------------------------------------------------


def test_an_inbound_message_reaches_a_running_desk_long_before_its_poll(served, world, crm_token, tmp_path, running):
    engine = desk_engine(served.url, world, tmp_path)
    running.append(engine)
    engine.start()
    wait_for(lambda: settled(engine), 10, "the engine never went live")
    first = engine.status.last_sync
    interaction = post_inbound(served.url, crm_token, "Is my refund through?")
    took = wait_for(lambda: in_cache(engine, interaction), ARRIVES, "the inbound message never reached the cache")
    assert took < ARRIVES
    assert engine.status.live and engine.status.last_sync > first
    assert engine._stream.connects == 1  # one stream all along: no reconnect explains the pull


def count_pulls(engine: SyncEngine) -> list[str]:
    """The cursors the engine pulls from, from now on."""
    pulls: list[str] = []
    pull = engine.client.pull

    def counted(cursor: str, limit: int) -> dict:
        pulls.append(cursor)
        return pull(cursor, limit)

    engine.client.pull = counted  # type: ignore[method-assign]
    return pulls


def test_a_caught_up_desk_applies_the_page_the_poke_carries_without_pulling(served, world, crm_token, tmp_path, running):
    engine = desk_engine(served.url, world, tmp_path)
    running.append(engine)
    engine.start()
    wait_for(lambda: settled(engine), 10, "the engine never went live")
    pulls = count_pulls(engine)
    for text in ("Is my refund through?", "Hello?"):
        interaction = post_inbound(served.url, crm_token, text)
        wait_for(lambda: in_cache(engine, interaction), ARRIVES, "the inbound message never reached the cache")
    assert pulls == []  # the pokes brought the changes


def test_the_desks_own_note_is_pushed_and_its_answer_comes_on_the_stream_without_a_pull(served, world, db_engine, tmp_path,
                                                                                          running):
    engine = desk_engine(served.url, world, tmp_path)
    running.append(engine)
    engine.start()
    wait_for(lambda: settled(engine), 10, "the engine never went live")
    pulls = count_pulls(engine)
    cache = Cache(engine.cache_path)
    try:
        before = cache.state("cursor")
        cache.queue_interaction(cache.identity(), world.conversations["maria-sms"], "sms", "Checked: refunded", note=True)
        engine.wake(pull=False)  # what the desk does after a local action
        wait_for(lambda: cache.outbox_count() == 0 and cache.state("cursor") != before, ARRIVES,
                 "the note was not pushed, or its change never came back")
    finally:
        cache.close()
    assert pulls == []  # the push's own page poke brought the server's answer
    with session(db_engine) as db:
        notes = db.scalars(sa.select(Interaction.id).where(Interaction.text == "Checked: refunded")).all()
    assert len(notes) == 1


def test_with_plain_pokes_the_desk_pulls_as_before(served, world, crm_token, tmp_path, running):
    served.hub.plain_pokes = True  # a server without page pokes
    engine = desk_engine(served.url, world, tmp_path)
    running.append(engine)
    engine.start()
    wait_for(lambda: settled(engine), 10, "the engine never went live")
    pulls = count_pulls(engine)
    interaction = post_inbound(served.url, crm_token, "Is my refund through?")
    wait_for(lambda: in_cache(engine, interaction), ARRIVES, "the inbound message never reached the cache")
    assert pulls  # the poke said only "pull"


def test_a_page_applies_only_on_the_cursor_it_starts_from_and_never_twice(served, world, crm_token, tmp_path):
    engine = desk_engine(served.url, world, tmp_path, live=False)
    cache = Cache(engine.cache_path)
    try:
        engine.sync_once(cache)  # bootstrapped, at the log's head
        start = cache.state("cursor")
        interaction = post_inbound(served.url, crm_token, "Is my refund through?")
        page = {"after": start, **engine.client.pull(start, 1000)}  # what a poke would carry
        pulls = count_pulls(engine)

        engine._on_page(1, {**page, "after": "not-this-cache"})  # a page for a cursor we do not have
        engine._on_poke(1)
        engine.sync_once(cache, poll=False)  # a round a poke woke
        assert len(pulls) == 1 and in_cache(engine, interaction)  # dropped; the pull brought the message
        after_pull = cache.state("cursor")
        assert after_pull == page["cursor"]

        engine._on_page(2, page)  # exactly where the pull got: nothing to apply, nothing to pull
        engine._on_poke(2)
        engine.sync_once(cache, poll=False)  # a round a poke woke
        assert len(pulls) == 1 and cache.state("cursor") == after_pull

        with cache.write() as db:  # back to the start, without the message: the page fits again
            db.execute("DELETE FROM interactions WHERE id = ?", (interaction,))
            cache.set_state("cursor", start, db)
        engine._on_page(3, page)
        engine._on_page(3, page)  # delivered twice: the second no longer starts at the cursor
        engine._on_poke(3)
        engine.sync_once(cache, poll=False)  # a round a poke woke
        assert len(pulls) == 1 and in_cache(engine, interaction) and cache.state("cursor") == page["cursor"]
        assert cache.apply_changes(page["changes"], page["cursor"], after=start) == -1  # checked in the transaction
    finally:
        cache.close()
        engine.client.close()


def test_presence_and_typing_of_a_teammate_reach_the_desk(served, world, db_engine, tmp_path, running):
    with session(db_engine) as db:
        carol = add_agent(db, "Carol Diaz", "carol@example.com", "Billing")
        carol_token = issue_token(db, carol)
        db.commit()
    engine = desk_engine(served.url, world, tmp_path)
    heard: list[str] = []
    engine.on_live = lambda kind, data: heard.append(kind)
    running.append(engine)
    engine.start()
    wait_for(lambda: settled(engine), 10, "the engine never went live")
    maria = world.conversations["maria-sms"]
    carol_http = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {carol_token}"})
    assert carol_http.post("/api/v1/presence", json={"status": "available", "viewing": maria}).status_code == 200
    assert carol_http.post("/api/v1/typing", json={"conversation_id": maria}).status_code == 204
    wait_for(lambda: engine.presence.here(maria, world.agents["alice@example.com"]) == ([carol.id], [carol.id]),
             ARRIVES, "Carol's presence and typing never reached Alice's engine")
    assert engine.status.presence.status(carol.id) == "available"
    assert "typing" in heard and "presence" in heard
    carol_http.close()


def test_a_dropped_stream_falls_back_to_polling_then_reconnects(served, world, crm_token, tmp_path, running):
    engine = desk_engine(served.url, world, tmp_path, poll_interval=0.3)
    running.append(engine)
    engine.start()
    wait_for(lambda: settled(engine), 10, "the engine never went live")
    heard_up_to = engine._stream.last_seq
    served.hub.drop_streams()  # the server stays up for sync; its live stream refuses (503)
    wait_for(lambda: not engine.status.live, ARRIVES, "the engine never noticed the stream drop")
    polled = post_inbound(served.url, crm_token, "Anyone there?")
    wait_for(lambda: in_cache(engine, polled), ARRIVES, "no fallback poll while the stream was down")
    assert not engine._stream.up and engine._stream.connects == 1
    engine.poll_interval = 30.0  # from here only the stream can bring changes quickly
    served.hub.allow_streams()
    wait_for(lambda: settled(engine) and engine._stream.connects == 2, 10, "the engine never reconnected")
    assert served.hub.resumes == [None, heard_up_to]  # Last-Event-ID: the last poke heard before the drop
    live = post_inbound(served.url, crm_token, "Back again")
    wait_for(lambda: in_cache(engine, live), ARRIVES, "the reconnected stream did not bring the message")


def test_a_restarted_server_on_the_same_port_is_rejoined(db_engine, world, crm_token, tmp_path, running):
    first = serve(db_engine)
    engine = desk_engine(first.url, world, tmp_path)
    running.append(engine)
    engine.start()
    wait_for(lambda: settled(engine), 10, "the engine never went live")
    first.stop()  # also proves the open stream does not keep the server from stopping
    wait_for(lambda: not engine.status.live, ARRIVES, "the engine never noticed the server going away")
    resume_from = engine._stream.last_seq
    second = serve(db_engine, port=first.port, hub=SwitchableHub(db_engine))
    try:
        wait_for(lambda: settled(engine), 10, "the engine never reconnected to the restarted server")
        assert resume_from is not None and second.hub.resumes == [resume_from]  # Last-Event-ID
        interaction = post_inbound(second.url, crm_token, "After the restart")
        wait_for(lambda: in_cache(engine, interaction), ARRIVES, "the new stream did not bring the message")
        assert engine.status.online and engine.status.error is None
    finally:
        engine.stop(timeout=5)
        second.stop()


def test_stop_closes_the_stream_at_once(served, world, tmp_path):
    engine = desk_engine(served.url, world, tmp_path)
    engine.start()
    wait_for(lambda: settled(engine) and served.hub.subscriber_count == 1, 10, "the engine never went live")
    stream = engine._stream
    started = time.monotonic()
    engine.stop(timeout=5)
    took = time.monotonic() - started
    assert took < 1.0, f"stop took {took:.2f} s"  # the heartbeat is 15 s: a read left blocked would show
    assert not engine._thread.is_alive() and not stream.alive
    wait_for(lambda: served.hub.subscriber_count == 0, 5, "the server still holds the stream")


async def test_quitting_the_desk_ends_sync_and_stream_within_a_second(served, world, tmp_path):
    from textual.widgets import Static

    from agentdesk.config import Settings
    from agentdesk.desk import build_desk

    app = build_desk(Settings(), served.url, world.tokens["alice@example.com"], tmp_path)
    async with app.run_test(size=(160, 45)) as pilot:
        deadline = time.monotonic() + 10
        while not (app.sync_status.live and "live" in str(app.query_one("#status", Static).content)):
            assert time.monotonic() < deadline, "the status bar never said live"
            await pilot.pause(0.05)
        stream = app.engine._stream
        started = time.monotonic()
        await pilot.press("q")
    took = time.monotonic() - started
    assert took < 1.5, f"quitting took {took:.2f} s"
    assert not app.engine._thread.is_alive() and not stream.alive


def test_reconnect_delays_double_with_jitter_up_to_the_cap():
    for failures in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (failures - 1))
        delays = [backoff(failures) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered: desks do not all come back in the same instant
