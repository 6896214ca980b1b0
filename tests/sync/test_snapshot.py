"""A fresh cache loads from the server's snapshot (one SQLite file, server/snapshot.py), against a real server
(SQLite writes the file by ATTACH, PostgreSQL from fetched rows): the same rows as the bootstrap pages, a pull on
from its cursor, and nothing half-loaded from a snapshot that breaks off or is not a usable database."""

from __future__ import annotations

import sqlite3
from collections import namedtuple

import pytest

from agentdesk.server.changes import record_upsert
from agentdesk.server.db import session
from agentdesk.server.models import Conversation
from agentdesk.store.cache import Cache
from agentdesk.store.search import search
from agentdesk.sync.client import ServerUnavailable, SyncClient
from agentdesk.sync.engine import SyncEngine
from faultproxy import FaultProxy
from mirror import mirror

ALICE = "alice@example.com"
shutil_usage = namedtuple("shutil_usage", "total used free")  # shutil.disk_usage's answer


def bootstrapped(live, path, *, snapshots: bool, url: str | None = None) -> tuple[Cache, list[str]]:
    """A cache bootstrapped by the real engine, and the entities it asked pages of."""
    cache, client = Cache(path), SyncClient(url or live.url, live.world.tokens[ALICE])
    paged: list[str] = []
    page = client.bootstrap_page
    client.bootstrap_page = lambda entity, *args: (paged.append(entity), page(entity, *args))[1]  # type: ignore[method-assign]
    SyncEngine(path, client, live=False, snapshots=snapshots).sync_once(cache)
    client.close()
    return cache, paged


def test_a_snapshot_loads_the_rows_the_pages_load_and_the_pull_goes_on_from_its_cursor(live_server, tmp_path):
    by_snapshot, paged = bootstrapped(live_server, tmp_path / "snapshot.sqlite3", snapshots=True)
    by_pages, _ = bootstrapped(live_server, tmp_path / "pages.sqlite3", snapshots=False)
    assert paged == []
    assert by_snapshot.db.execute("SELECT count(*) FROM interactions").fetchone()[0] > 0
    assert mirror(by_snapshot.db) == mirror(by_pages.db)  # the same text: times, JSON, flags alike
    assert not list(tmp_path.glob("*.snapshot*"))
    with session(live_server.engine) as db:  # a change after the snapshot: the next round pulls it
        conversation = db.get(Conversation, live_server.world.conversations["maria-email"])
        conversation.priority = "urgent"
        record_upsert(db, conversation)
        db.commit()
    SyncEngine(by_snapshot.path, SyncClient(live_server.url, live_server.world.tokens[ALICE]), live=False).sync_once(by_snapshot)
    assert by_snapshot.conversation(live_server.world.conversations["maria-email"])["priority"] == "urgent"
    assert by_snapshot.state("bootstrapped") == "1" and search(by_snapshot.db, "Hello", limit=50)  # indexed


def test_a_snapshot_cut_off_in_transfer_loads_none_of_it_and_the_next_round_loads_the_rest(live_server, tmp_path):
    """The messages' file breaks off: none of it is loaded (the other file is, whole), and the next round brings
    the messages in pages."""
    proxy = FaultProxy(int(live_server.url.rsplit(":", 1)[1])).start()  # (tests/sync/faultproxy.py)
    proxy.cut_next(b"entities=interactions", after=2000)
    path = tmp_path / "cache.sqlite3"
    cache, client = Cache(path), SyncClient(proxy.url, live_server.world.tokens[ALICE])
    engine = SyncEngine(path, client, live=False)
    try:
        with pytest.raises(ServerUnavailable):
            engine.sync_once(cache)
        assert proxy.fired == 1 and cache.state("bootstrap.cursor") and cache.state("bootstrap.interactions") is None
        assert cache.db.execute("SELECT count(*) FROM interactions").fetchone()[0] == 0
        assert cache.conversation(live_server.world.conversations["maria-email"]) is not None
        assert not list(tmp_path.glob("*.snapshot*"))
        proxy.heal()
        engine.sync_once(cache)
    finally:
        proxy.stop()
    fresh, _ = bootstrapped(live_server, tmp_path / "fresh.sqlite3", snapshots=False)
    assert mirror(cache.db) == mirror(fresh.db) and cache.state("bootstrapped") == "1"
    client.close()


@pytest.mark.parametrize("made", ["garbage", "a view"])
def test_a_snapshot_that_is_not_a_usable_database_is_set_aside_for_the_pages(live_server, tmp_path, made):
    """The file is the server's: one that is no database, or names a view where a table belongs (a view could
    run functions as it is read), loads nothing; the pages load the rows instead."""
    path = tmp_path / "cache.sqlite3"
    cache, client = Cache(path), SyncClient(live_server.url, live_server.world.tokens[ALICE])

    real = client.snapshot

    def bad_snapshot(target, columns):  # noqa: ANN001, ANN202 - the first file garbage, or the second's table a view
        if made == "garbage":
            target.write_bytes(b"not a database at all " * 500)
        elif "interactions" not in columns:
            return real(target, columns)
        else:
            db = sqlite3.connect(target)
            db.execute("CREATE VIEW interactions AS SELECT 'x' AS id")
            db.close()
        return "djE6MA", 0  # cursor 0

    client.snapshot = bad_snapshot  # type: ignore[method-assign]
    SyncEngine(path, client, live=False).sync_once(cache)
    fresh, _ = bootstrapped(live_server, tmp_path / "fresh.sqlite3", snapshots=False)
    assert mirror(cache.db) == mirror(fresh.db)
    assert cache.db.execute("SELECT count(*) FROM interactions WHERE id = 'x'").fetchone()[0] == 0
    assert not list(tmp_path.glob("*.snapshot*"))
    client.close()


def test_a_bootstrap_stopped_between_the_two_files_goes_on_in_pages(live_server, tmp_path):
    """The first file (everything but the messages) is in, with its cursor; the second fails to come. The next
    round does not start over: the messages come in pages, and the cache ends as a fresh one would."""
    path = tmp_path / "cache.sqlite3"
    cache, client = Cache(path), SyncClient(live_server.url, live_server.world.tokens[ALICE])
    real = client.snapshot

    def second_fails(target, columns):  # noqa: ANN001, ANN202
        if "interactions" in columns:
            raise ServerUnavailable("gone between the two files")
        return real(target, columns)

    client.snapshot = second_fails  # type: ignore[method-assign]
    engine = SyncEngine(path, client, live=False)
    with pytest.raises(ServerUnavailable, match="between the two files"):
        engine.sync_once(cache)
    assert cache.state("bootstrap.conversations") == "done" and cache.state("bootstrap.cursor")
    assert cache.state("bootstrap.interactions") is None and cache.conversation(live_server.world.conversations["maria-email"])
    paged: list[str] = []
    page = client.bootstrap_page
    client.bootstrap_page = lambda entity, *args: (paged.append(entity), page(entity, *args))[1]  # type: ignore[method-assign]
    engine.sync_once(cache)
    assert set(paged) == {"interactions"}
    fresh, _ = bootstrapped(live_server, tmp_path / "fresh.sqlite3", snapshots=False)
    assert mirror(cache.db) == mirror(fresh.db) and cache.state("bootstrapped") == "1"
    assert not list(tmp_path.glob("cache.sqlite3.snapshot*"))
    client.close()


@pytest.mark.parametrize("fault", ["too little room", "the disk fills up"])
def test_a_server_without_room_for_a_snapshot_sends_the_desk_to_the_pages(live_server, tmp_path, monkeypatch, caplog, fault):
    """A snapshot must not fill the server's disk (its own writes would fail): with less room than the database
    in its temp directory, or when that fills up while the file is written, the server answers 404, logs why
    and keeps no file; the desk loads the pages."""
    from agentdesk.server import snapshot

    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(server_tmp))
    if fault == "too little room":
        monkeypatch.setattr(snapshot.shutil, "disk_usage", lambda path: shutil_usage(total=1 << 30, used=1 << 30, free=4096))
    else:
        def fills_up(engine, queries, path):  # noqa: ANN001, ANN202 - SQLite's own error for a full disk
            path.write_bytes(b"half a file")
            db = sqlite3.connect(":memory:")
            db.execute("PRAGMA max_page_count=1")
            db.execute("CREATE TABLE t (x)")  # needs a second page: SQLITE_FULL

        monkeypatch.setattr(snapshot, "build", fills_up)
    cache, paged = bootstrapped(live_server, tmp_path / "cache.sqlite3", snapshots=True)
    assert set(paged) >= {"conversations", "interactions"} and cache.state("bootstrapped") == "1"
    fresh, _ = bootstrapped(live_server, tmp_path / "fresh.sqlite3", snapshots=False)
    assert mirror(cache.db) == mirror(fresh.db)
    assert list(server_tmp.iterdir()) == []
    assert any("no snapshot for" in r.getMessage() and "the desk loads the bootstrap pages" in r.getMessage() for r in caplog.records)


def test_a_snapshot_the_server_fails_to_make_sends_the_desk_to_the_pages(live_server, tmp_path, monkeypatch, caplog):
    """A snapshot that fails to be made is not asked for again and again: the server logs why and answers 500,
    and the pages load the rows, as they do from a server that makes none."""
    from agentdesk.server import snapshot

    def broken(engine, queries, path):  # noqa: ANN001, ANN202
        raise RuntimeError("a bug in the snapshot")

    monkeypatch.setattr(snapshot, "build", broken)
    cache, paged = bootstrapped(live_server, tmp_path / "cache.sqlite3", snapshots=True)
    assert set(paged) >= {"conversations", "interactions"} and cache.state("bootstrapped") == "1"
    fresh, _ = bootstrapped(live_server, tmp_path / "fresh.sqlite3", snapshots=False)
    assert mirror(cache.db) == mirror(fresh.db)
    assert any("making it failed" in r.getMessage() and r.exc_info for r in caplog.records)


class Interleaved(dict):
    """A snapshot's queries, with `between()` run after the first entity is read: a write committed meanwhile."""

    def __init__(self, queries, between) -> None:  # noqa: ANN001
        super().__init__(queries)
        self.between = between

    def items(self):  # noqa: ANN202 - what snapshot.build iterates
        for n, item in enumerate(super().items()):
            if n == 1:
                self.between()
            yield item


def test_a_snapshot_is_one_view_of_the_database_whatever_commits_while_it_is_made(live_server, tmp_path):
    """SQLite's read transaction, PostgreSQL's REPEATABLE READ: a change committed between two entities' reads is
    in neither, and the head the file shows is from before it (so the desk's pull brings it)."""
    import sqlalchemy as sa

    from agentdesk.server import snapshot
    from agentdesk.server.models import Change, Interaction

    maria = live_server.world.conversations["maria-email"]

    def commit_a_change() -> None:
        with session(live_server.engine) as db:
            conversation = db.get(Conversation, maria)
            conversation.priority = "urgent"
            record_upsert(db, conversation)
            db.commit()

    with session(live_server.engine) as db:
        head_before = db.execute(sa.select(sa.func.max(Change.seq))).scalar_one()
    queries = Interleaved({
        "interactions": (["id"], sa.select(Interaction.id)),
        "conversations": (["id", "priority"], sa.select(Conversation.id, Conversation.priority)),
    }, commit_a_change)
    head = snapshot.build(live_server.engine, queries, tmp_path / "snapshot.sqlite3")
    with session(live_server.engine) as db:
        assert db.execute(sa.select(sa.func.max(Change.seq))).scalar_one() > head == head_before  # the change came
    file = sqlite3.connect(tmp_path / "snapshot.sqlite3")
    assert file.execute("SELECT priority FROM conversations WHERE id = ?", (maria,)).fetchone() == ("normal",)
    assert file.execute("SELECT count(*) FROM interactions").fetchone()[0] > 0
    file.close()
