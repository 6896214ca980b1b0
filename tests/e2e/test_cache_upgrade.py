"""A cache written by the previous schema opens without losing its outbox or drafts, and the next sync fills
the columns it lacked while pulling on from where it was."""

from __future__ import annotations

import sqlite3

from agentdesk.server.changes import record_upsert
from agentdesk.server.db import session
from agentdesk.server.models import Conversation
from agentdesk.store.cache import Cache, Identity
from agentdesk.store.schema import PAGE_SIZE, SCHEMA_VERSION
from agentdesk.sync.client import SyncClient
from agentdesk.sync.engine import SyncEngine


def downgrade_to_v1(path) -> None:
    """The shape schema version 1 wrote: no teams/agents.active, conversations.tags or outbox.undo."""
    db = sqlite3.connect(path)
    for (index,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'queue_%'").fetchall():
        db.execute(f"DROP INDEX {index}")  # version 3's queue indexes (they cover conversations.tags)
    for table, column in (("teams", "active"), ("agents", "active"), ("conversations", "tags"), ("outbox", "undo")):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()


def test_a_version_1_cache_is_upgraded_in_place(live_server, tmp_path):
    world = live_server.world
    client = SyncClient(live_server.url, world.tokens["alice@example.com"])
    cache = Cache(tmp_path / "cache.sqlite3")
    cache.set_identity(client.me())
    engine = SyncEngine(cache.path, client)
    engine.sync_once(cache)
    me = cache.identity()
    sms, email = world.conversations["maria-sms"], world.conversations["maria-email"]
    cache.queue_interaction(me, sms, "sms", "Queued before the upgrade")
    cache.save_draft(email, "email", "half a thought")
    old_cursor = cache.state("cursor")
    cache.close()
    downgrade_to_v1(tmp_path / "cache.sqlite3")

    with session(live_server.engine) as db:
        tagged = db.get(Conversation, email)
        tagged.tags = ["vip"]  # no change-log entry: only loading the table again can bring it
        db.add(tagged)
        moved = db.get(Conversation, sms)
        moved.priority = "high"
        record_upsert(db, moved)  # a logged change after the cache's cursor: the pull must still bring it
        db.commit()

    cache = Cache(tmp_path / "cache.sqlite3")
    assert cache.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert cache.latest_draft(email) == ("email", "half a thought")
    [queued] = cache.outbox()
    assert queued["kind"] == "reply" and cache.db.execute("SELECT undo FROM outbox").fetchone()[0] is not None
    assert cache.queue_count(me) == 2  # the desk still opens from the cache as it was
    assert cache.state("bootstrap.cursor") == old_cursor and cache.state("bootstrapped") is None

    engine.sync_once(cache)
    assert cache.conversation(email)["tags"] == '["vip"]'
    assert cache.conversation(sms)["priority"] == "high"
    assert cache.db.execute("SELECT count(*) FROM teams WHERE active = 1").fetchone()[0] == 2
    assert cache.outbox_count() == 0 and len(live_server.interactions("Queued before the upgrade")) == 1
    assert cache.state("bootstrapped") == "1"
    cache.close()
    client.close()


def test_a_rejected_reply_queued_before_the_upgrade_still_rolls_back(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite3")
    cache.db.execute("INSERT INTO conversations (id, customer_id, channel, status, team_id) VALUES ('c', 'cu', 'sms', 'open', 't')")
    cache.queue_interaction(Identity("me", "Me", ("t",)), "c", "sms", "Too late")
    cache.close()
    downgrade_to_v1(tmp_path / "cache.sqlite3")
    cache = Cache(tmp_path / "cache.sqlite3")
    cache.settle(cache.outbox()[0]["mutation_id"], "rejected", "gone")
    assert cache.db.execute("SELECT count(*) FROM interactions").fetchone()[0] == 0
    cache.close()


def test_a_new_cache_file_has_large_pages_and_an_older_file_keeps_its_own(tmp_path):
    """New files get PAGE_SIZE (the bootstrap loads faster); a file made with SQLite's default 4 KiB pages by an
    earlier version opens and works as it is (changing its page size would mean rewriting it whole)."""
    fresh = Cache(tmp_path / "new.sqlite3")
    assert fresh.db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 16384
    fresh.close()
    older = sqlite3.connect(tmp_path / "old.sqlite3")
    older.execute("PRAGMA page_size = 4096")
    older.execute("CREATE TABLE earlier (x)")
    older.close()
    cache = Cache(tmp_path / "old.sqlite3")
    assert cache.db.execute("PRAGMA page_size").fetchone()[0] == 4096
    cache.save_draft("c1", "sms", "still works")
    assert cache.latest_draft("c1") == ("sms", "still works")
    cache.close()
