"""The outbox's undo records: every local action is one transaction of optimistic change + outbox row, and a
rejection puts back exactly what that action changed — no more (later actions stand), no less."""

from __future__ import annotations

import json

import pytest

from agentdesk.store.cache import Cache, Identity

ME = Identity("me", "Me", ("billing",))


@pytest.fixture
def cache(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite3")
    cache.db.execute(
        "INSERT INTO conversations (id, customer_id, channel, status, priority, team_id, tags)"
        " VALUES ('c1', 'cu1', 'email', 'open', 'normal', 'billing', '[]')"
    )
    yield cache
    cache.close()


def column(cache, name):
    return cache.conversation("c1")[name]


def test_a_change_and_its_outbox_row_are_written_together(cache):
    mutation = cache.queue_conversation_change("c1", "set_priority", {"priority": "high"}, {"priority": "high"})
    assert column(cache, "priority") == "high"
    [row] = cache.outbox()
    assert row["mutation_id"] == mutation and row["kind"] == "set_priority"
    assert row["args"] == {"conversation_id": "c1", "priority": "high"}


def test_a_failed_write_leaves_neither(cache):
    cache.db.execute("CREATE TRIGGER no_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(Exception, match="disk full"):
        cache.queue_conversation_change("c1", "set_status", {"status": "closed"}, {"status": "closed"})
    assert column(cache, "status") == "open" and cache.outbox_count() == 0


def test_only_conversation_columns_can_change(cache):
    with pytest.raises(ValueError, match="not conversation columns"):
        cache.queue_conversation_change("c1", "set_status", {}, {"status = 'x' --": "closed"})
    with pytest.raises(LookupError):
        cache.queue_conversation_change("nope", "set_status", {"status": "closed"}, {"status": "closed"})


def test_a_rejection_restores_the_previous_values_and_says_why(cache):
    cache.queue_conversation_change("c1", "assign", {"agent_id": "me"}, {"assignee_id": "me"})
    cache.queue_conversation_change("c1", "tag", {"tag": "vip"}, {"tags": ["vip"]})
    first, second = cache.outbox()
    cache.settle(first["mutation_id"], "rejected", "Bob Stone took this conversation first.")
    cache.settle(second["mutation_id"], "rejected", "No.")
    assert column(cache, "assignee_id") is None and json.loads(column(cache, "tags")) == []
    assert cache.take_notices() == ["Not assigned: Bob Stone took this conversation first.", "Tag not added: No."]


def test_an_applied_change_stays(cache):
    cache.queue_conversation_change("c1", "set_status", {"status": "closed"}, {"status": "closed", "snooze_until": None})
    cache.settle(cache.outbox()[0]["mutation_id"], "applied", None)
    assert column(cache, "status") == "closed" and cache.outbox_count() == 0 and cache.take_notices() == []


def test_a_later_action_on_the_same_column_stands_and_then_undoes_to_the_start(cache):
    cache.queue_conversation_change("c1", "set_priority", {"priority": "high"}, {"priority": "high"})
    cache.queue_conversation_change("c1", "set_priority", {"priority": "urgent"}, {"priority": "urgent"})
    first, second = cache.outbox()
    cache.settle(first["mutation_id"], "rejected", "no")
    assert column(cache, "priority") == "urgent"  # the later action stands
    cache.settle(second["mutation_id"], "rejected", "no")
    assert column(cache, "priority") == "normal"  # not the rejected "high"


def test_a_pulled_server_row_wins_over_an_undo(cache):
    cache.queue_conversation_change("c1", "set_status", {"status": "closed"}, {"status": "closed"})
    cache.db.execute("UPDATE conversations SET status = 'pending' WHERE id = 'c1'")  # what a pull wrote since
    cache.settle(cache.outbox()[0]["mutation_id"], "rejected", "no")
    assert column(cache, "status") == "pending"


def test_a_rejected_reply_still_disappears(cache):
    cache.queue_interaction(ME, "c1", "email", "Too late")
    cache.settle(cache.outbox()[0]["mutation_id"], "rejected", "gone")
    assert cache.db.execute("SELECT count(*) FROM interactions").fetchone()[0] == 0
    assert cache.take_notices() == ["Not sent: gone"]
