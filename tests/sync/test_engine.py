"""The sync engine against a real server: bootstrap, push exactly once, rollback on rejection."""

from __future__ import annotations

import json
import sys
import threading
import time
from contextlib import closing

import pytest

from agentdesk.server.changes import record_upsert
from agentdesk.server.models import Conversation
from agentdesk.store.cache import Cache, checkpoint
from agentdesk.sync.client import ServerUnavailable, SyncClient
from agentdesk.sync.engine import BOOTSTRAP_AHEAD, SyncEngine


def engine_for(live, tmp_path, email="alice@example.com"):
    client = SyncClient(live.url, live.world.tokens[email])
    cache = Cache(tmp_path / "cache.sqlite3")
    me = client.me()
    cache.set_identity(me)
    return SyncEngine(cache.path, client), cache


def test_bootstrap_loads_only_the_agents_scope(live_server, tmp_path):
    engine, cache = engine_for(live_server, tmp_path)
    engine.sync_once(cache)
    ids = {row[0] for row in cache.db.execute("SELECT id FROM conversations")}
    assert ids == {live_server.world.conversations["maria-email"], live_server.world.conversations["maria-sms"]}
    assert cache.queue_count(cache.identity()) == 2


def wal_frames(cache_path) -> tuple[int, int]:
    """(frames in the WAL, frames of them copied into the database file), from the WAL index's header
    (sqlite.org/walformat.html: mxFrame at byte 16, nBackfill at byte 96, native byte order)."""
    shm = cache_path.with_name(cache_path.name + "-shm").read_bytes()
    return int.from_bytes(shm[16:20], sys.byteorder), int.from_bytes(shm[96:100], sys.byteorder)


def test_the_bootstraps_wal_is_copied_into_the_file_in_a_thread_of_its_own(live_server, tmp_path, monkeypatch):
    engine, cache = engine_for(live_server, tmp_path)
    ran: list[tuple[str, object]] = []

    def copied_in(path):
        ran.append((threading.current_thread().name, path))
        checkpoint(path)

    monkeypatch.setattr("agentdesk.sync.engine.checkpoint", copied_in)
    engine.sync_once(cache)
    assert engine.checkpointed is not None
    engine.checkpointed.result(timeout=30)
    assert ran == [("agentdesk-checkpoint", cache.path)]


def test_a_checkpoint_copies_the_whole_wal_while_the_cache_stays_open(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite3")
    with cache.write() as db:  # a few hundred pages in the WAL, as a bootstrap leaves there (but fewer)
        db.executemany("INSERT INTO notices (text, created_at) VALUES (?, '')", [("x" * 4000,)] * 1000)
    frames, copied = wal_frames(cache.path)
    assert frames > 200 and copied == 0
    checkpoint(cache.path)
    assert wal_frames(cache.path) == (frames, frames)
    assert cache.db.execute("SELECT count(*) FROM notices").fetchone()[0] == 1000


def test_a_queued_reply_survives_a_dead_server_and_is_sent_once_later(live_server, tmp_path):
    engine, cache = engine_for(live_server, tmp_path)
    engine.sync_once(cache)
    me = cache.identity()
    cache.queue_interaction(me, live_server.world.conversations["maria-sms"], "sms", "On its way")
    dead = SyncEngine(cache.path, SyncClient("http://127.0.0.1:9", "x", timeout=0.5))
    with pytest.raises(ServerUnavailable, match="unreachable"):
        dead.sync_once(cache)
    assert cache.outbox()[0]["state"] == "queued"
    engine.sync_once(cache)
    engine.sync_once(cache)
    assert cache.outbox_count() == 0
    assert len(live_server.interactions("On its way")) == 1
    status = cache.db.execute("SELECT delivery_status FROM interactions WHERE text = 'On its way'").fetchall()
    assert status == [("queued",)]  # in the server's outbox: no SMS provider is configured in this test


def test_a_rejected_reply_is_rolled_back_with_a_notice(live_server, tmp_path):
    engine, cache = engine_for(live_server, tmp_path)
    engine.sync_once(cache)
    me = cache.identity()
    # A conversation the cache still shows but the server no longer lets Alice see (it moved to Support).
    hidden = live_server.world.conversations["ken-email"]
    cache.db.execute(
        "INSERT INTO conversations (id, customer_id, channel, status, team_id) VALUES (?, ?, 'email', 'open', ?)",
        (hidden, live_server.world.customers["ken"], me.team_ids[0]),
    )
    cache.queue_interaction(me, hidden, "email", "Too late")
    seen = []
    engine.on_status = seen.append
    engine.sync_once(cache)
    assert cache.db.execute("SELECT count(*) FROM interactions WHERE text = 'Too late'").fetchone()[0] == 0
    assert cache.outbox_count() == 0
    assert any("not visible" in notice for status in seen for notice in status.notices)
    assert live_server.interactions("Too late") == []


def test_a_known_token_opens_its_cache_without_the_server(live_server, tmp_path):
    from agentdesk.sync.account import resolve_account

    token = live_server.world.tokens["alice@example.com"]
    online, me = resolve_account(live_server.url, token, tmp_path, SyncClient(live_server.url, token))
    assert me is not None and me["email"] == "alice@example.com"
    (tmp_path / "stray").mkdir()
    offline, me_again = resolve_account(live_server.url, token, tmp_path, SyncClient("http://127.0.0.1:9", token, timeout=0.2))
    assert me_again is None and offline.cache_path == online.cache_path


def test_a_damaged_account_index_only_costs_the_offline_shortcut(live_server, tmp_path):
    from agentdesk.sync.account import NoAccount, resolve_account

    (tmp_path / "accounts.json").write_text('{"trunc')
    token = live_server.world.tokens["alice@example.com"]
    with pytest.raises(NoAccount, match="no cache for this token"):
        resolve_account(live_server.url, token, tmp_path, SyncClient("http://127.0.0.1:9", token, timeout=0.2))
    account, me = resolve_account(live_server.url, token, tmp_path, SyncClient(live_server.url, token))
    assert me["id"] == account.agent_id


def test_a_page_that_is_not_json_reads_as_not_an_agentdesk_server(live_server):
    with pytest.raises(ServerUnavailable, match="not an agentdesk server"):
        SyncClient(live_server.url, "x")._call("GET", "/docs")  # FastAPI's HTML docs page, status 200
    for url in ("http://[::1", "https://host\t/", "http://host:port", "localhost:8000", "ftp://host"):
        with pytest.raises(ServerUnavailable, match="not a usable server URL"):
            SyncClient(url, "x")


def test_a_full_disk_keeps_the_cache_usable(live_server, tmp_path):
    import sqlite3

    engine, cache = engine_for(live_server, tmp_path)
    engine.sync_once(cache)
    pages = cache.db.execute("PRAGMA page_count").fetchone()[0]
    cache.db.execute(f"PRAGMA max_page_count = {pages}")  # no room for one more page: SQLITE_FULL
    big = "x" * 200_000
    with pytest.raises(sqlite3.OperationalError, match="full"):
        cache.queue_interaction(cache.identity(), live_server.world.conversations["maria-sms"], "sms", big)
    assert not cache.db.in_transaction
    assert cache.outbox_count() == 0


def test_a_cursor_behind_compaction_reloads_and_keeps_the_outbox(live_server, tmp_path):
    """After the server compacts its change log, an old cache bootstraps again, losing nothing queued."""
    from datetime import timedelta

    from agentdesk.server.compaction import compact
    from agentdesk.server.db import session as server_session

    cache_path = tmp_path / "cache.sqlite3"
    token = live_server.world.tokens["alice@example.com"]
    SyncEngine(cache_path, SyncClient(live_server.url, token)).sync_once(Cache(cache_path))
    maria = live_server.world.conversations["maria-email"]
    with server_session(live_server.engine) as db:  # a change the old cache has not seen, then compaction
        conversation = db.get(Conversation, maria)
        conversation.subject = "renamed while the desk was closed"
        record_upsert(db, conversation)
        db.commit()
        assert compact(db, keep=timedelta(0))[0] > 0
    cache = Cache(cache_path)
    cache.queue_interaction(cache.identity(), maria, "email", "queued before the reset")
    SyncEngine(cache_path, SyncClient(live_server.url, token)).sync_once(cache)
    assert cache.db.execute("SELECT subject FROM conversations WHERE id = ?", (maria,)).fetchone()[0] == "renamed while the desk was closed"
    assert cache.outbox_count() == 0
    assert len(live_server.interactions("queued before the reset")) == 1


def test_a_customer_leaves_the_cache_with_their_last_conversation_of_the_agents_teams(live_server, tmp_path):
    """Found by tests/sync/test_sync_state_machine.py: with both of María's conversations moved to another team,
    Alice's cache kept María and her addresses, which a fresh bootstrap of Alice's scope no longer has."""
    engine, cache = engine_for(live_server, tmp_path)
    engine.sync_once(cache)
    world, maria = live_server.world, live_server.world.customers["maria"]
    support = world.teams["Support"]
    for label in ("maria-email", "maria-sms"):
        cache.queue_conversation_change(world.conversations[label], "transfer", {"to_team_id": support}, {"team_id": support})
        engine.sync_once(cache)
        assert cache.conversation(world.conversations[label]) is None
        assert (cache.customer(maria) is None) == (label == "maria-sms")  # gone with the last one, not before
    assert cache.db.execute("SELECT count(*) FROM identities WHERE customer_id = ?", (maria,)).fetchone()[0] == 0


class EndlessPages:
    """A bootstrap that never ends (or, with `fail_after`, fails after that many pages); with `hold`, requests
    after the first wait for it. Notes the threads that fetch and decode."""

    base_url = "http://pages.test"

    def __init__(self, fail_after: int | None = None, hold: threading.Event | None = None, header_lies: bool = False) -> None:
        self.fail_after = fail_after
        self.hold = hold
        self.header_lies = header_lies  # the header names another next page than the body
        self.requests = 0
        self.fetched_in: set[str] = set()
        self.decoded_in: set[str] = set()

    def bootstrap_page(self, entity, after, limit, columns):  # noqa: ANN001, ANN201
        self.requests += 1
        self.fetched_in.add(threading.current_thread().name)
        if self.hold is not None and self.requests > 1:
            self.hold.wait()
        if self.fail_after is not None and len(after) >= self.fail_after:
            raise ServerUnavailable("gone mid-bootstrap")
        body = json.dumps({"cursor": "1", "columns": ["id"], "rows": [[after + "x"]], "next_after": after + "x"}).encode()
        return body, after + ("y" if self.header_lies else "x")

    def decode(self, body: bytes) -> dict:
        self.decoded_in.add(threading.current_thread().name)
        return json.loads(body)


def bootstrap_fetchers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "agentdesk-bootstrap"]


def wait_until(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition(), what


@pytest.mark.parametrize("taken", [0, 1, 3])
def test_the_bootstrap_fetches_pages_ahead_and_decodes_in_the_writing_thread(tmp_path, taken):
    """While a page is written the next BOOTSTRAP_AHEAD are fetched, in another thread; they are decoded in the
    writing thread (decoding in the fetcher had the two threads trade the GIL row by row with executemany)."""
    client = EndlessPages()
    engine = SyncEngine(tmp_path / "cache.sqlite3", client)  # type: ignore[arg-type]
    with closing(engine._bootstrap_pages([("teams", "")])) as pages:
        for _ in zip(range(taken + 1), pages, strict=False):
            pass
        wait_until(lambda: client.requests == taken + 1 + BOOTSTRAP_AHEAD, "the next pages were not requested")
        time.sleep(0.05)
        assert client.requests == taken + 1 + BOOTSTRAP_AHEAD  # so far ahead, no more
    wait_until(lambda: not bootstrap_fetchers(), "the fetcher, waiting to hand over a page, was left behind")
    assert client.decoded_in == {threading.current_thread().name}
    assert client.fetched_in == {"agentdesk-bootstrap"}


def test_a_bootstrap_that_stops_does_not_wait_for_the_page_in_flight(tmp_path):
    """The fetcher is a daemon thread (quitting does not wait for its request), and a bootstrap that stops (a
    failed write, say) returns at once; the request's thread ends when its answer comes."""
    hold = threading.Event()
    client = EndlessPages(hold=hold)
    engine = SyncEngine(tmp_path / "cache.sqlite3", client)  # type: ignore[arg-type]
    pages = engine._bootstrap_pages([("teams", "")])
    next(pages)
    wait_until(lambda: client.requests == 2, "the next page was not requested")
    fetchers = bootstrap_fetchers()
    assert fetchers and all(thread.daemon for thread in fetchers)
    pages.close()  # with the second request still in flight
    hold.set()
    wait_until(lambda: not bootstrap_fetchers(), "a fetcher was left behind")


def test_a_page_whose_header_and_body_disagree_stops_the_bootstrap(tmp_path):
    """The fetcher follows the header's key, the saved progress is the body's: if they differ, pages would be
    skipped or loaded twice, so the bootstrap stops at the first such page instead."""
    engine = SyncEngine(tmp_path / "cache.sqlite3", EndlessPages(header_lies=True))  # type: ignore[arg-type]
    with pytest.raises(ServerUnavailable, match="header and body disagree"):
        list(engine._bootstrap_pages([("teams", "")]))
    wait_until(lambda: not bootstrap_fetchers(), "a fetcher was left waiting")


def test_a_failed_page_request_is_raised_to_the_bootstrap(tmp_path):
    engine = SyncEngine(tmp_path / "cache.sqlite3", EndlessPages(fail_after=3))  # type: ignore[arg-type]
    with pytest.raises(ServerUnavailable, match="gone mid-bootstrap"):
        list(engine._bootstrap_pages([("teams", "")]))
    wait_until(lambda: not bootstrap_fetchers(), "a fetcher was left waiting")
