"""store/customers.py over a real cache file: the merge search, and how each card action's optimistic change
and undo record behave when the server refuses it."""

from __future__ import annotations

import json

import pytest

from agentdesk.store import customers
from agentdesk.store.cache import Cache


@pytest.fixture
def cache(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite3")
    rows = [("cu1", "María López"), ("cu2", "Maria Lopez"), ("cu3", "100% Real_Name"), ("cu4", "Gone Away")]
    cache.db.executemany("INSERT INTO customers (id, display_name, tags, notes) VALUES (?, ?, '[]', '')", rows)
    cache.db.execute("UPDATE customers SET merged_into = 'cu1' WHERE id = 'cu4'")
    cache.db.executemany(
        "INSERT INTO identities (id, customer_id, kind, address) VALUES (?, ?, ?, ?)",
        [("i1", "cu2", "email", "maria@home.test"), ("i2", "cu2", "phone", "+34600111222"), ("i3", "cu4", "email", "maria@gone.test")],
    )
    cache.db.execute(
        "INSERT INTO merge_suggestions (id, customer_id, other_id, reason, status, created_at)"
        " VALUES ('s1', 'cu1', 'cu2', 'same name', 'open', '2026-11-23T09:00:00.000Z')"
    )
    yield cache
    cache.close()


def test_search_matches_names_and_addresses_but_not_this_customer_or_merged_ones(cache):
    assert [(m.id, m.address) for m in customers.search(cache, "34600", "cu1")] == [("cu2", "+34600111222")]
    assert [m.id for m in customers.search(cache, "MARIA", "cu1")] == ["cu2"]  # cu1 is the card's own, cu4 merged
    assert [m.id for m in customers.search(cache, "maría", "cu2")] == ["cu1"]
    assert customers.search(cache, "maria", "cu2") == []  # LIKE folds ASCII case only, not accents
    assert customers.search(cache, "  ", "cu1") == []


def test_search_takes_like_wildcards_literally(cache):
    assert [m.id for m in customers.search(cache, "100%", "cu1")] == ["cu3"]
    assert customers.search(cache, "%", "cu3") == []
    assert customers.search(cache, "l_pez", "cu3") == []
    assert [m.id for m in customers.search(cache, "real_", "cu1")] == ["cu3"]


def test_a_refused_merge_puts_the_customer_back_and_offers_no_undo(cache):
    customers.queue_merge(cache, "cu2", "cu1", "Maria Lopez")
    assert customers.suggestions(cache, "cu1") == []  # the merged-away customer's suggestion leaves at once
    assert customers.last_merge(cache, "cu1")["source_id"] == "cu2"
    [row] = cache.outbox()
    assert row["kind"] == "merge_customers" and row["args"]["source_id"] == "cu2" and row["args"]["target_id"] == "cu1"
    cache.settle(row["mutation_id"], "rejected", "One of these customers was already merged into another.")
    assert cache.customer("cu2")["merged_into"] is None
    assert [s.id for s in customers.suggestions(cache, "cu1")] == ["s1"]
    assert customers.last_merge(cache, "cu1") is None
    assert cache.take_notices() == ["Not merged: One of these customers was already merged into another."]


def test_undo_after_the_source_left_the_cache_still_reaches_the_server(cache):
    merge_id = customers.queue_merge(cache, "cu2", "cu1", "Maria Lopez")
    cache.settle(cache.outbox()[0]["mutation_id"], "applied", None)
    cache.db.execute("DELETE FROM customers WHERE id = 'cu2'")  # the pull: nobody here sees cu2 any more
    assert customers.last_merge(cache, "cu1") is not None
    customers.queue_unmerge(cache, "cu1")
    [row] = cache.outbox()
    assert row["kind"] == "unmerge" and row["args"] == {"merge_id": merge_id} and row["entity_id"] == "cu1"
    assert customers.last_merge(cache, "cu1") is None and customers.queue_unmerge(cache, "cu1") is None
    cache.settle(row["mutation_id"], "rejected", "This merge was already undone.")
    assert cache.customer("cu1")["merged_into"] is None
    assert cache.take_notices() == ["Merge not undone: This merge was already undone."]


def test_tags_notes_and_dismissal_roll_back_when_refused(cache):
    customers.queue_retag(cache, "cu1", "tag", "vip", [])
    customers.queue_notes(cache, "cu1", "Prefers email")
    customers.queue_dismiss(cache, "s1")
    assert json.loads(cache.customer("cu1")["tags"]) == ["vip"] and customers.suggestions(cache, "cu1") == []
    kinds = [(row["kind"], row["args"]) for row in cache.outbox()]
    assert kinds == [
        ("tag", {"customer_id": "cu1", "tag": "vip"}),
        ("edit_customer", {"customer_id": "cu1", "notes": "Prefers email"}),
        ("dismiss_suggestion", {"suggestion_id": "s1"}),
    ]
    for row in cache.outbox():
        cache.settle(row["mutation_id"], "rejected", "no")
    card = customers.card(cache, "cu1")
    assert card.tags == [] and card.notes == "" and [s.id for s in customers.suggestions(cache, "cu1")] == ["s1"]
    assert cache.take_notices() == ["Tag not added: no", "Customer not saved: no", "Suggestion not dismissed: no"]


def test_notes_over_the_servers_limit_are_refused_before_they_queue(cache):
    with pytest.raises(ValueError, match="at most 20,000"):
        customers.queue_notes(cache, "cu1", "x" * 20_001)
    assert cache.outbox_count() == 0
