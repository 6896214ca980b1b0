"""The desk bench's cache generator (bench/_deskgen.py) at a tiny size: a consistent, bootstrapped cache that the
desk's own reads accept, with the heavy customer and the queue's first two rows where the bench expects them."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _deskgen import Sizes, build  # noqa: E402

from agentdesk.store.cache import Cache, Identity  # noqa: E402
from agentdesk.store.schema import INDEXES  # noqa: E402

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("deskgen") / "cache.sqlite3"
    manifest = build(path, Sizes.tiny(), seed=3, now=NOW)
    return path, manifest


def count(db, sql):
    return db.execute(sql).fetchone()[0]


def test_sizes_and_references_are_consistent(built):
    path, manifest = built
    sizes = Sizes.tiny()
    db = sqlite3.connect(path)
    assert count(db, "SELECT count(*) FROM conversations") == sizes.conversations
    assert count(db, "SELECT count(*) FROM interactions") == sizes.interactions
    assert count(db, "SELECT count(*) FROM customers") == sizes.customers
    heavy = db.execute("SELECT count(*) FROM interactions WHERE customer_id = ?", (manifest["heavy_customer"]["id"],))
    assert heavy.fetchone()[0] == sizes.heavy_interactions
    # every interaction belongs to a conversation of the same customer; every conversation to a known customer and team
    assert count(db, "SELECT count(*) FROM interactions i LEFT JOIN conversations c ON c.id = i.conversation_id"
                     " WHERE c.id IS NULL OR c.customer_id != i.customer_id OR c.channel != i.channel") == 0
    assert count(db, "SELECT count(*) FROM conversations c LEFT JOIN customers cu ON cu.id = c.customer_id"
                     " LEFT JOIN teams t ON t.id = c.team_id WHERE cu.id IS NULL OR t.id IS NULL") == 0
    assert count(db, "SELECT count(*) FROM conversations c WHERE last_message_at !="
                     " (SELECT max(occurred_at) FROM interactions i WHERE i.conversation_id = c.id)") == 0
    assert count(db, "SELECT count(DISTINCT channel) FROM conversations") == 5
    assert count(db, "SELECT count(*) FROM identities") > sizes.customers // 2
    json.loads(db.execute("SELECT tags FROM conversations LIMIT 1").fetchone()[0])
    db.close()


def test_it_is_a_bootstrapped_cache_with_an_identity_and_the_indexes(built):
    path, manifest = built
    cache = Cache(path)
    try:
        assert cache.state("bootstrapped") == "1"
        me = cache.identity()
        assert me == Identity(manifest["me"]["id"], "Alex Morgan", tuple(manifest["me"]["team_ids"]))
        built_names = {name for (name,) in cache.db.execute("SELECT name FROM sqlite_master")}
        wanted = set(re.findall(r"CREATE (?:UNIQUE )?INDEX IF NOT EXISTS (\w+)", INDEXES))
        assert wanted and wanted <= built_names  # finish_bootstrap ran
        urgent = cache.db.execute(  # most urgent of mine first: the bench's row 0, then the heavy customer
            "SELECT cu.display_name FROM conversations c JOIN customers cu ON cu.id = c.customer_id"
            " WHERE c.assignee_id = ? AND c.status IN ('open', 'pending') ORDER BY c.sla_due IS NULL, c.sla_due LIMIT 2",
            (me.agent_id,),
        ).fetchall()
        assert urgent == [(manifest["first_customer"]["name"],), (manifest["heavy_customer"]["name"],)]
    finally:
        cache.close()


def test_the_same_seed_gives_the_same_data(built, tmp_path):
    path, manifest = built
    again = build(tmp_path / "again.sqlite3", Sizes.tiny(), seed=3, now=NOW)
    assert again["heavy_customer"] == manifest["heavy_customer"] and again["me"] == manifest["me"]
    sql = "SELECT id, text, occurred_at FROM interactions ORDER BY id LIMIT 50"
    assert sqlite3.connect(path).execute(sql).fetchall() == sqlite3.connect(tmp_path / "again.sqlite3").execute(sql).fetchall()
