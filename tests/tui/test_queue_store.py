"""store/queue.py: what each tab, filter and sort lists, windows, unread state, and that windows walk an index."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest
from queue_world import ME, build

from agentdesk.store import queue
from agentdesk.store.cache import Cache
from agentdesk.store.queue import Filters, QueueView, parse_filters


@pytest.fixture
def cache(tmp_path):
    cache = Cache(build(tmp_path / "cache.sqlite3"))
    yield cache
    cache.close()


def ids(cache: Cache, view: QueueView) -> list[str]:
    return [row.id for row in queue.rows(cache.db, ME, view, 0, 100)]


def test_each_tab_lists_its_conversations_most_urgent_sla_first(cache):
    assert ids(cache, QueueView("mine")) == ["c-mine-mail", "c-mine-sms"]  # snoozed and closed are out of sight
    assert ids(cache, QueueView("unassigned")) == ["c-free-chat", "c-free-call"]  # no SLA comes last
    assert ids(cache, QueueView("team")) == ["c-mine-mail", "c-sams", "c-mine-sms", "c-free-chat", "c-free-call"]
    assert set(ids(cache, QueueView("all"))) == {c[0] for c in __import__("queue_world").CONVERSATIONS}
    for tab in queue.TABS:
        assert queue.count(cache.db, ME, QueueView(tab)) == len(ids(cache, QueueView(tab)))


def test_sorts(cache):
    assert ids(cache, QueueView("team", sort="newest")) == ["c-free-chat", "c-mine-sms", "c-free-call", "c-sams", "c-mine-mail"]
    assert ids(cache, QueueView("team", sort="priority")) == ["c-free-chat", "c-mine-mail", "c-sams", "c-mine-sms", "c-free-call"]


def test_filters_narrow_every_tab_and_a_status_filter_replaces_the_tabs_rule(cache):
    assert ids(cache, QueueView("all", parse_filters("channel:email"))) == ["c-mine-mail", "c-support", "c-closed"]
    assert ids(cache, QueueView("team", parse_filters("tag:vip"))) == ["c-sams", "c-free-chat"]
    assert ids(cache, QueueView("team", parse_filters("tag:vi"))) == []  # a whole tag, not a substring
    assert ids(cache, QueueView("mine", parse_filters("status:snoozed,closed"))) == ["c-mine-snoozed", "c-closed"]
    assert ids(cache, QueueView("team", parse_filters("priority:urgent,high channel:chat"))) == ["c-free-chat"]
    assert queue.count(cache.db, ME, QueueView("all", parse_filters("tag:refund"))) == 2


def test_parse_filters_reads_what_the_agent_types_and_says_what_is_wrong():
    assert parse_filters("") == Filters() and not Filters()
    f = parse_filters("Channel:SMS,email  tag:vip priority:high status:pending")
    assert f == Filters(channel=("sms", "email"), status=("pending",), priority=("high",), tag=("vip",))
    assert parse_filters(f.text()) == f
    for bad, says in (("colour:red", "key:value"), ("channel:fax", "channel is one of"), ("vip", "key:value"),
                      ("tag:a\x1bb", "control")):
        with pytest.raises(ValueError, match=says):
            parse_filters(bad)


def test_windows_and_capped_counts(cache):
    everything = ids(cache, QueueView("all"))
    assert [r.id for r in queue.rows(cache.db, ME, QueueView("all"), 3, 2)] == everything[3:5]
    assert queue.rows(cache.db, ME, QueueView("all"), 50, 10) == []
    assert queue.count(cache.db, ME, QueueView("all"), cap=3) == 3
    counts = queue.tab_counts(cache.db, ME, QueueView("team"), cap=1000)
    assert counts == {"mine": 2, "unassigned": 2, "team": 5, "all": 8}


def test_rows_carry_names_preview_assignee_and_unread_and_opening_marks_them_read(cache):
    row = next(r for r in queue.rows(cache.db, ME, QueueView("team"), 0, 10) if r.id == "c-sams")
    assert (row.customer_name, row.preview, row.assignee_name, row.unread) == ("Eve Stone", "latest words of c-sams", "Sam Lee", True)
    assert queue.mark_seen(cache, "c-sams") is True
    assert queue.mark_seen(cache, "c-sams") is False  # nothing new: no write
    assert not next(r for r in queue.rows(cache.db, ME, QueueView("team"), 0, 10) if r.id == "c-sams").unread
    with cache.write() as db:  # a new message arrives
        db.execute("UPDATE conversations SET last_message_at = '2026-11-23T15:00:00.000Z' WHERE id = 'c-sams'")
    assert next(r for r in queue.rows(cache.db, ME, QueueView("team"), 0, 10) if r.id == "c-sams").unread


def test_windows_in_the_second_half_are_read_from_the_end_alike(cache):
    """Given the total, a window past the middle walks the index backwards: the same rows in the same order."""
    for tab in queue.TABS:
        for sort in queue.SORTS:
            view = QueueView(tab, sort=sort)
            everything, total = ids(cache, view), queue.count(cache.db, ME, view)
            assert total == len(everything) and total > 1
            for offset in range(total + 1):
                for limit in (1, 2, 3, 100):
                    window = [r.id for r in queue.rows(cache.db, ME, view, offset, limit, total)]
                    assert window == everything[offset:offset + limit], (view, offset, limit)


def test_a_window_walks_the_sorts_index_and_a_count_reads_its_tabs_range(cache):
    """No temporary sort of the whole tab (which would grow with the queue), no table rows read."""
    for tab in queue.TABS:
        for sort in queue.SORTS:
            for filters in (Filters(), parse_filters("channel:sms tag:vip"), parse_filters("status:closed")):
                view = QueueView(tab, filters, sort)
                where, params = queue._where(ME, view, walk=True)
                for order in (queue.ORDER_BY[sort], queue.ORDER_BY_REVERSED[sort]):  # walked from either end
                    sql = f"SELECT c.rowid FROM conversations c WHERE {where} ORDER BY {order} LIMIT 100"
                    plan = " | ".join(row[3] for row in cache.db.execute("EXPLAIN QUERY PLAN " + sql, params))
                    assert "TEMP B-TREE" not in plan and f"COVERING INDEX queue_{sort}" in plan, (view, plan)
    for tab in ("mine", "unassigned"):
        where, params = queue._where(ME, QueueView(tab))
        plan = " ".join(r[3] for r in cache.db.execute(f"EXPLAIN QUERY PLAN SELECT count(*) FROM conversations c WHERE {where}", params))
        assert "COVERING INDEX queue_counts (status=? AND assignee_id=" in plan, plan


def test_the_inbox_wrappers_keep_the_old_meaning(cache):
    """Cache.queue / queue_count (the sync report, older callers): mine and unassigned in my teams."""
    assert cache.queue_count(ME) == 4
    assert [r.id for r in cache.queue(ME)] == ["c-mine-mail", "c-mine-sms", "c-free-chat", "c-free-call"]
    assert cache.queue_count(ME, replace(QueueView(), tab="all")) == 8


def test_mark_seen_on_a_busy_cache_raises_rather_than_hangs(tmp_path):
    cache = Cache(build(tmp_path / "c.sqlite3"))
    cache.db.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(tmp_path / "c.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError):
        queue.mark_seen(cache, "c-sams")
    other.execute("ROLLBACK")
    assert queue.mark_seen(cache, "c-sams")
