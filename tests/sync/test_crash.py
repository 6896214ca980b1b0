"""Crash safety: a sync client killed with SIGKILL mid-push and mid-bootstrap, then restarted, against a real
server behind a fault-injecting proxy. Nothing queued is lost, nothing is applied twice, and the cache ends
equal to the server for the agent's scope."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlmodel import select

from agentdesk.cli import main
from agentdesk.domain.clock import utcnow
from agentdesk.server.auth import new_id
from agentdesk.server.db import session
from agentdesk.server.models import Interaction, Mutation
from agentdesk.store.cache import Cache
from agentdesk.sync.client import SyncClient
from agentdesk.sync.engine import SyncEngine
from faultproxy import FaultProxy
from mirror import differences, mirror, server_view

SRC = str(Path(__file__).resolve().parents[2] / "src")
PUSH = b"POST /api/v1/sync/push"


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} (after {timeout} s)"
        time.sleep(0.05)


@pytest.fixture
def proxy(live_server) -> Iterator[FaultProxy]:
    proxy = FaultProxy(int(live_server.url.rsplit(":", 1)[1])).start()
    yield proxy
    proxy.stop()


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A client in a process of its own, so it can be killed for real."""
    environment = {**os.environ, **env, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, *args], env=environment, stdout=out, stderr=subprocess.STDOUT)


def sigkill(child: subprocess.Popen) -> None:
    assert child.poll() is None, "the client ended before it was killed"
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def assert_cache_equals_server(cache_path: Path, live_server, token: str, tmp_path: Path) -> None:
    db = read_only(cache_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        mine = mirror(db)
    finally:
        db.close()
    assert differences(mine, server_view(live_server.url, token, tmp_path / "fresh.sqlite3")) == {}


def test_sigkill_while_a_push_answer_is_in_flight_loses_and_doubles_nothing(live_server, proxy, tmp_path, monkeypatch, capsys):
    """`agentdesk sync` pushes; the server applies every reply; the answer is held back; the client is killed.
    Restarted, it sends the same mutations again: the server says `duplicate`, and each reply exists once."""
    token = live_server.world.tokens["alice@example.com"]
    env = {"AGENTDESK_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    base = ["--server", proxy.url, "--data-dir", str(tmp_path / "data")]
    assert main([*base, "sync", "--once", "--json"]) == 0
    cache_path = Path(json.loads(capsys.readouterr().out)["cache"])
    conversation = live_server.world.conversations["maria-sms"]
    texts = [f"crash-push reply {n}" for n in range(5)]
    for text in texts:
        assert main([*base, "reply", conversation, "--text", text]) == 0
    assert main([*base, "note", conversation, "--text", "crash-push note"]) == 0
    capsys.readouterr()

    proxy.stall_next(PUSH)
    client = spawn(["-m", "agentdesk", *base, "sync"], env | {"AGENTDESK_SYNC__REQUEST_TIMEOUT": "120"}, tmp_path / "client.log")
    try:
        wait_for(lambda: proxy.fired == 1, "the client did not push")
        wait_for(lambda: all(live_server.interactions(t) for t in [*texts, "crash-push note"]), "the server did not apply the push")
    finally:
        sigkill(client)
    db = read_only(cache_path)
    assert db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall() == [("sending", 6)]  # unanswered
    db.close()

    proxy.heal()
    assert main([*base, "sync", "--once", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outbox"] == 0, "the restarted client did not settle its outbox"
    for text in [*texts, "crash-push note"]:
        assert len(live_server.interactions(text)) == 1, f"{text!r} is not on the server exactly once"
    assert proxy.requests.count(PUSH.decode()) == 2  # the push the kill interrupted, and the one after the restart
    with session(live_server.engine) as db:
        assert {m.status for m in db.exec(select(Mutation))} == {"applied"}
    assert_cache_equals_server(cache_path, live_server, token, tmp_path)


BOOTSTRAP_CHILD = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from agentdesk.sync import engine
    from agentdesk.sync.client import SyncClient

    engine.BOOTSTRAP_PAGE = int(sys.argv[3])
    client = SyncClient(sys.argv[1], os.environ["AGENTDESK_TOKEN"], timeout=120)
    engine.SyncEngine(Path(sys.argv[2]), client, live=False, snapshots=sys.argv[4:] != ["pages"]).run()
""")
PAGE = 50


def add_messages(live_server, count: int) -> None:
    """Many messages on a conversation Alice sees, so her bootstrap of interactions takes many pages."""
    world, now = live_server.world, utcnow()
    with session(live_server.engine) as db:
        for n in range(count):
            db.add(Interaction(
                id=new_id(), conversation_id=world.conversations["maria-email"], customer_id=world.customers["maria"],
                channel="email", direction="inbound", text=f"message {n}", occurred_at=now - timedelta(seconds=n),
            ))
        db.commit()


def interactions_in(cache_path: Path) -> int:
    db = read_only(cache_path)
    try:
        return db.execute("SELECT count(*) FROM interactions").fetchone()[0]
    finally:
        db.close()


def test_sigkill_during_a_bootstrap_resumes_where_it_stopped(live_server, proxy, tmp_path, monkeypatch):
    """Killed after three pages of interactions were committed, the client resumes from the fourth: the pages
    before are neither fetched again nor doubled, and the cache ends equal to the server. (Pages: a fresh cache
    loads from the server's snapshot where it makes one, test_snapshot.py; pages are how a bootstrap resumes.)"""
    add_messages(live_server, 400)
    token = live_server.world.tokens["alice@example.com"]
    cache_path = tmp_path / "cache.sqlite3"
    proxy.stall_next(b"entity=interactions", skip=3)
    args = ["-c", BOOTSTRAP_CHILD, proxy.url, str(cache_path), str(PAGE), "pages"]
    client = spawn(args, {"AGENTDESK_TOKEN": token}, tmp_path / "client.log")
    try:
        wait_for(lambda: proxy.fired == 1, "the client did not ask for a fourth page of interactions")
        # The fourth page is requested before the third is written (engine._bootstrap_pages fetches ahead): wait for that write.
        wait_for(lambda: interactions_in(cache_path) == 3 * PAGE, "the third page of interactions was not committed")
    finally:
        sigkill(client)

    db = read_only(cache_path)
    progress = dict(db.execute("SELECT key, value FROM sync_state WHERE key LIKE 'bootstrap%'").fetchall())
    assert db.execute("SELECT count(*) FROM interactions").fetchone()[0] == 3 * PAGE
    db.close()
    assert progress["bootstrap.interactions"].startswith("after:") and progress["bootstrap.teams"] == "done"

    proxy.heal()
    before = len(proxy.requests)
    monkeypatch.setattr("agentdesk.sync.engine.BOOTSTRAP_PAGE", PAGE)
    cache = Cache(cache_path)
    SyncEngine(cache_path, SyncClient(proxy.url, token), live=False).sync_once(cache)
    cache.close()
    resumed = [r for r in proxy.requests[before:] if "/sync/bootstrap" in r]
    assert "entity=teams" not in " ".join(resumed)  # finished entities are not loaded again
    after = parse_qs(urlsplit(resumed[0].split()[1]).query)["after"]
    assert after == [progress["bootstrap.interactions"].removeprefix("after:")]  # from where it stopped
    assert_cache_equals_server(cache_path, live_server, token, tmp_path)


def test_sigkill_during_a_snapshot_bootstrap_leaves_nothing_half_loaded(live_server, proxy, tmp_path, monkeypatch):
    """Killed while it waits for the server's snapshot, the client has loaded none of the messages; restarted, it loads
    whole. The server keeps no snapshot file of the request that went (nor of any other)."""
    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(server_tmp))
    add_messages(live_server, 400)
    token = live_server.world.tokens["alice@example.com"]
    cache_path = tmp_path / "cache.sqlite3"
    proxy.stall_next(b"/sync/snapshot")
    client = spawn(["-c", BOOTSTRAP_CHILD, proxy.url, str(cache_path), str(PAGE)], {"AGENTDESK_TOKEN": token}, tmp_path / "client.log")
    try:
        wait_for(lambda: proxy.fired == 1, "the client did not ask for its first load")
    finally:
        sigkill(client)
    assert interactions_in(cache_path) == 0
    proxy.heal()
    cache = Cache(cache_path)
    SyncEngine(cache_path, SyncClient(proxy.url, token), live=False).sync_once(cache)
    cache.close()
    assert not list(tmp_path.glob("*.snapshot*"))
    assert_cache_equals_server(cache_path, live_server, token, tmp_path)
    wait_for(lambda: not list(server_tmp.iterdir()), "the server kept a snapshot file")
