"""Moving through the queue: the highlight moves at once and its conversation opens with it (or, while a key is
held, once it is let go), an action always acts on the highlighted conversation, and paging keys move the cursor."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

from queue_world import ME, NOW, build
from test_timeline import SIZE, opened
from test_timeline import desk as timeline_desk

from agentdesk.tui import app as desk_app
from agentdesk.tui.app import AgentDesk
from agentdesk.tui.widgets.queue import QueueList
from agentdesk.tui.widgets.timeline import Timeline


@asynccontextmanager
async def desk(tmp_path, size=(150, 40)):
    app = AgentDesk(build(tmp_path / "cache.sqlite3"), ME, engine=None, clock=lambda: NOW)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.press("tab", "tab", "tab")  # All: 8 conversations
        await settled(app, pilot)
        yield app, pilot


async def settled(app, pilot, deadline: float = 5.0) -> None:
    """Wait (polling) until the desk has opened what the queue highlights."""
    end = time.monotonic() + deadline
    while app.open_pending and time.monotonic() < end:
        await pilot.pause(0.01)
    assert not app.open_pending


async def test_a_move_opens_the_highlighted_conversation_right_after(tmp_path):
    async with desk(tmp_path) as (app, pilot):
        queue = app.query_one(QueueList)
        await pilot.press("j")
        await settled(app, pilot)
        assert app.open_row is not None and app.open_row.id == queue.current.id == queue.row(1).id
        assert app.query_one(Timeline).customer_name == queue.current.customer_name


async def test_a_tapped_move_opens_its_conversation_while_the_key_is_handled(tmp_path):
    """A move that is not part of a held key opens the conversation as it is handled, so the highlight and the
    conversation are painted in one frame (nothing is left pending for a later one)."""
    async with desk(tmp_path) as (app, pilot):
        queue = app.query_one(QueueList)
        app._last_move = 0.0  # the last move long ago: a tap
        app.action_queue_move(1)
        assert not app.open_pending and app.open_row.id == queue.current.id == queue.row(1).id


async def test_a_held_key_opens_only_where_it_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(desk_app, "KEY_REPEAT_GAP", 1.0)  # a held key, even on a busy test machine
    async with desk(tmp_path) as (app, pilot):
        queue = app.query_one(QueueList)
        opened: list[str] = []
        original = app.open_conversation
        app.open_conversation = lambda row: (opened.append(row.id), original(row))  # type: ignore[method-assign]
        await pilot.press("j", "j", "j", "j")
        assert queue.cursor == 4 and app.open_pending  # the highlight ran ahead of the open
        await settled(app, pilot)
        assert app.open_row.id == queue.row(4).id
        assert opened == [queue.row(1).id, queue.row(4).id]  # the first move, then where the key stopped


async def test_an_action_right_after_a_move_acts_on_the_highlighted_conversation(tmp_path, monkeypatch):
    monkeypatch.setattr(desk_app, "KEY_REPEAT_GAP", 30.0)  # the open waits for the held key to be let go
    async with desk(tmp_path) as (app, pilot):
        queue = app.query_one(QueueList)
        await pilot.press("j", "j")
        assert app.open_pending and app.open_row.id == queue.row(1).id
        assert queue.row(2).assignee_id != ME.agent_id
        await pilot.press("a")  # assign to me: the highlighted one, opened first
        assert not app.open_pending and app.open_row.id == queue.row(2).id
        assert app.cache.conversation(app.open_row.id)["assignee_id"] == ME.agent_id


async def test_paging_keys_move_the_cursor_and_open(tmp_path):
    async with desk(tmp_path, size=(150, 14)) as (app, pilot):  # a few rows in view
        queue = app.query_one(QueueList)
        page = queue.scrollable_content_region.height // 2 - 1
        assert 0 < page < queue.total - 1
        await pilot.press("pagedown")
        await settled(app, pilot)
        assert queue.cursor == page and app.open_row.id == queue.row(page).id
        await pilot.press("end")
        await settled(app, pilot)
        assert queue.cursor == queue.total - 1 and app.open_row.id == queue.row(queue.total - 1).id
        await pilot.press("pageup")
        assert queue.cursor == queue.total - 1 - page
        await pilot.press("home")
        await settled(app, pilot)
        assert queue.cursor == 0 and app.open_row.id == queue.row(0).id


async def test_held_paging_keys_and_quit_open_nothing_on_the_way(tmp_path, monkeypatch):
    """Paging is the queue's own move (held, it opens only where it stops); quitting opens nothing (it would
    mark seen, and tell the server the agent views, a conversation they never looked at)."""
    monkeypatch.setattr(desk_app, "KEY_REPEAT_GAP", 30.0)  # every press below is a held key
    async with desk(tmp_path, size=(150, 14)) as (app, pilot):
        queue = app.query_one(QueueList)
        opened: list[str] = []
        original = app.open_conversation
        app.open_conversation = lambda row: (opened.append(row.id), original(row))  # type: ignore[method-assign]
        await pilot.press("pagedown")
        await settled(app, pilot)  # the first press opens right after
        first = queue.current.id
        await pilot.press("pagedown", "home", "pageup", "end")
        assert app.open_pending and queue.current.id != first and opened == [first]
        await pilot.press("q")
        assert opened == [first] and app.open_row.id == first


async def test_timeline_keys_scroll_at_once(tmp_path):
    app = timeline_desk(tmp_path, 300)
    async with app.run_test(size=SIZE) as pilot:
        timeline = await opened(pilot)
        bottom = timeline.scroll_offset.y
        assert bottom == timeline.max_scroll_y > 0
        await pilot.press("up")
        assert timeline.scroll_offset.y == bottom - 1  # no animation: there when the key is handled
        await pilot.press("home")
        assert timeline.scroll_offset.y == 0 or timeline.lo > 0  # the top (where more may be laid out above)
