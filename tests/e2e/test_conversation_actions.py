"""Conversation actions from the desk's keys, against a real server: shown at once from the cache, pushed in
order by the sync engine, undone with a notice naming the server's reason when it refuses one."""

from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from textual.binding import Binding

from agentdesk.config import Settings
from agentdesk.config.keymap import DEFAULT_KEYMAP
from agentdesk.desk import build_desk
from agentdesk.domain.clock import from_iso, utcnow
from agentdesk.server.db import session
from agentdesk.server.models import Conversation
from agentdesk.tui.screens.help import HelpScreen
from agentdesk.tui.screens.pick import PickModal
from agentdesk.tui.widgets.queue import QueueList


async def wait_until(pilot, predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await pilot.pause(0.05)


def screen_text(app) -> str:
    strips = app.screen._compositor.render_strips()
    text = "\n".join("".join(segment.text for segment in strip) for strip in strips)
    assert "\x1b" not in text and not any(0x80 <= ord(c) < 0xA0 for c in text), repr(text)
    return text


def server_conversation(live_server, conversation_id: str) -> Conversation | None:
    with session(live_server.engine) as db:
        return db.get(Conversation, conversation_id)


def notifications(app, *severities: str) -> list[str]:
    return [str(n.message) for n in app._notifications if not severities or n.severity in severities]


class PushGate:
    """While held, the engine's pushes wait: whatever shows meanwhile came from the cache alone."""

    def __init__(self, client) -> None:
        self._open = threading.Event()
        self._open.set()
        self._push = client.push
        client.push = self.push

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def push(self, mutations):
        self._open.wait(10)
        return self._push(mutations)


@asynccontextmanager
async def desk(live_server, tmp_path, *, keymap: dict[str, str] | None = None, agent: str = "alice@example.com"):
    settings = Settings(sync={"poll_interval": 0.2}, keymap=keymap or {})
    app = build_desk(settings, live_server.url, live_server.world.tokens[agent], tmp_path)
    gate = PushGate(app.engine.client)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: app.query_one(QueueList).total == 2 and app.open_state is not None)
        try:
            yield app, pilot, gate
        finally:
            gate.release()


def in_an_hour(value) -> bool:
    return abs((from_iso(value) if isinstance(value, str) else value) - (utcnow() + timedelta(hours=1))) < timedelta(minutes=2)


# id, keys pressed, the cache's conversation columns right after, the server's conversation once synced
ACTIONS = [
    ("assign", ["a"], lambda w: {"assignee_id": w.agents["alice@example.com"]}),
    ("close", ["e"], lambda w: {"status": "closed"}),
    ("close-then-reopen", ["e", "o"], lambda w: {"status": "open"}),
    ("snooze-preset", ["s", "enter"], lambda w: {"status": "snoozed", "snooze_until": in_an_hour}),
    ("snooze-typed", ["s", "tab", *"in 1 hour", "enter"], lambda w: {"status": "snoozed", "snooze_until": in_an_hour}),
    ("priority", ["p", "down", "down", "enter"], lambda w: {"priority": "urgent"}),  # from normal, two down
    ("tag", ["t", *"VIP", "enter"], lambda w: {"tags": ["vip"]}),
    ("tag-then-untag", ["t", *"vip", "enter", "t", *"-vip", "enter", "t", *"refund", "enter"], lambda w: {"tags": ["refund"]}),
    ("transfer-to-team", ["T", "enter"], lambda w: {"team_id": w.teams["Support"], "assignee_id": None}),
]


def matches(actual, expected) -> bool:
    return expected(actual) if callable(expected) else actual == expected


@pytest.mark.parametrize(("keys", "expect"), [case[1:] for case in ACTIONS], ids=[case[0] for case in ACTIONS])
async def test_each_action_shows_at_once_then_reaches_the_server(live_server, tmp_path, keys, expect):
    from agentdesk.tui.choices import tags_of

    async with desk(live_server, tmp_path) as (app, pilot, gate):
        gate.hold()
        conversation_id = app.open_state["id"]
        await pilot.press(*keys)
        cached = app.cache.conversation(conversation_id) | {"tags": tags_of(app.cache.conversation(conversation_id))}
        for column, value in expect(live_server.world).items():
            assert matches(cached[column], value), (column, cached[column])
        assert app.cache.outbox_count() >= 1  # not sent yet: the change is the cache's own
        gate.release()

        def reached() -> bool:
            row = server_conversation(live_server, conversation_id)
            return all(matches(getattr(row, column), value) for column, value in expect(live_server.world).items())

        await wait_until(pilot, reached)
        await wait_until(pilot, lambda: app.cache.outbox_count() == 0)
        assert notifications(app, "warning", "error") == []


async def test_the_header_and_queue_row_change_in_the_next_frame(live_server, tmp_path):
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        gate.hold()
        assert "unassigned" in screen_text(app).splitlines()[2]
        assert " unassigned · " in screen_text(app).splitlines()[4]  # the queue row's assignee
        await pilot.press("a")
        lines = screen_text(app).splitlines()
        assert "assigned to you" in lines[2] and "Mine 1 " in lines[1]  # the tab strip counts it as mine
        assert app.query_one(QueueList).total == 1  # and it left the Unassigned tab at once
        await pilot.press("p", "up", "enter")
        assert "low priority" in screen_text(app).splitlines()[2]
        await pilot.press("e")
        assert "closed" in screen_text(app).splitlines()[2]
        assert "Mine 0 " in screen_text(app).splitlines()[1]  # closed: out of the queue, still open on the right


async def test_a_rejected_assign_is_undone_with_the_servers_reason(live_server, tmp_path):
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        conversation_id = app.open_state["id"]
        with session(live_server.engine) as db:  # Bob takes it on the server; the desk's cache does not know
            row = db.get(Conversation, conversation_id)
            row.assignee_id = live_server.world.agents["bob@example.com"]
            db.add(row)
            db.commit()
        gate.hold()
        await pilot.press("a")
        assert app.cache.conversation(conversation_id)["assignee_id"] == live_server.world.agents["alice@example.com"]
        gate.release()
        await wait_until(pilot, lambda: any("Bob Stone took this conversation first" in n for n in notifications(app)))
        await wait_until(pilot, lambda: app.cache.conversation(conversation_id)["assignee_id"] is None)
        assert "unassigned" in screen_text(app).splitlines()[2]
        assert app.cache.outbox_count() == 0
    assert server_conversation(live_server, conversation_id).assignee_id == live_server.world.agents["bob@example.com"]


async def test_a_bad_snooze_time_says_why_and_keeps_the_picker_open(live_server, tmp_path):
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        await pilot.press("s", "tab", *"soon", "enter")
        assert isinstance(app.screen, PickModal)
        assert "Could not read 'soon'" in screen_text(app)
        await pilot.press("ctrl+a", "ctrl+k", *"2001-01-01 09:00", "enter")
        assert isinstance(app.screen, PickModal) and "has already passed" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, PickModal)
        assert app.open_state["status"] == "open" and app.cache.outbox_count() == 0


async def test_help_lists_every_binding_with_its_current_keys(live_server, tmp_path):
    async with desk(live_server, tmp_path, keymap={"conversation.close": "x,f2"}) as (app, pilot, gate):
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        lines = screen_text(app).splitlines()
        for spec in DEFAULT_KEYMAP:
            row = next((line for line in lines if spec.id in line), None)
            assert row is not None, f"{spec.id} missing from help"
            assert spec.description in row
            for key in app.keys_by_id[spec.id].split(","):
                assert app.get_key_display(Binding(key, "")) in row, (spec.id, key)
        close = next(line for line in lines if "conversation.close" in line)
        assert "x / f2" in close
        for shown in ("? ", "j / ↓ / ]", "k / ↑ / [", " T "):
            assert shown in "\n".join(lines), shown
        await pilot.press("escape", "x")  # the rebound key works
        assert app.open_state["status"] == "closed"


async def palette_titles(app, pilot, query: str, seen: list[str] | None = None) -> list[str]:
    """The titles the command palette lists for `query` (and, into `seen`, the screen it showed)."""
    from textual.command import CommandList, CommandPalette

    await pilot.press("ctrl+p", *query)
    await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
    await pilot.pause(0.6)  # the palette gathers hits in the background
    options = app.screen.query_one(CommandList).options
    titles = [str(option.prompt).splitlines()[0] for option in options]
    if seen is not None:
        seen.append(screen_text(app))
    await pilot.press("escape")
    return titles


async def test_palette_offers_only_what_applies(live_server, tmp_path):
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        titles = await palette_titles(app, pilot, "")
        assert {"Close", "Assign to me", "Snooze", "Priority", "Tag", "Transfer", "Reply"} <= set(titles)
        assert "Reopen" not in titles
        assert "Reopen" not in await palette_titles(app, pilot, "reopen")
        await pilot.press("e")
        titles = await palette_titles(app, pilot, "")
        assert "Reopen" in titles and "Close" not in titles and "Snooze" not in titles
        await pilot.press("a")
        assert "Assign to me" not in await palette_titles(app, pilot, "")
        # Both conversations go to Support, out of Alice's view: nothing conversation-specific remains.
        first = app.open_state["id"]
        await pilot.press("T", "enter")
        await wait_until(pilot, lambda: app.open_state is not None and app.open_state["id"] != first)
        await pilot.press("T", "enter")
        await wait_until(pilot, lambda: app.open_state is None and app.query_one(QueueList).total == 0)
        titles = set(await palette_titles(app, pilot, ""))
        assert not titles & {"Close", "Reopen", "Assign to me", "Snooze", "Priority", "Tag", "Transfer", "Reply", "Send"}
        assert "Next conversation" in titles


HOSTILE_NAMES = ["[@click=app.quit]x[/]", "\x1b]52;c;cm0gLXJmIH4=\x07", "ok [/] bye", "[bold red]Evil[/]"]
VISIBLE_NAMES = ["[@click=app.quit]x[/]", "␛]52;c;cm0gLXJmIH4=␇", "ok [/] bye", "[bold red]Evil[/]"]


async def test_hostile_agent_and_team_names_render_literally_in_the_transfer_picker_and_palette(live_server, tmp_path):
    from agentdesk.server.admin import add_agent, add_team

    with session(live_server.engine) as db:
        for index, name in enumerate(HOSTILE_NAMES):
            add_team(db, f"{name} team")
            add_agent(db, name, f"hostile{index}@example.com", "Billing")
        db.commit()
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        await pilot.press("T")
        assert isinstance(app.screen, PickModal)
        text = screen_text(app)
        for visible in VISIBLE_NAMES:
            assert f"{visible} · Billing" in text, visible
            assert f"team {visible} team" in text, visible
        await pilot.press("escape")
        seen: list[str] = []
        titles = await palette_titles(app, pilot, "Transfer to", seen)
        for visible in VISIBLE_NAMES:
            assert f"Transfer to {visible} · Billing" in titles, visible
        assert "Transfer to [@click=app.quit]x[/] · Billing" in seen[0]
        assert app.is_running


async def test_transfer_to_an_agent_of_my_team(live_server, tmp_path):
    from agentdesk.server.admin import add_agent

    with session(live_server.engine) as db:
        cara = add_agent(db, "Cara Diaz", "cara@example.com", "Billing").id
        db.commit()
    async with desk(live_server, tmp_path) as (app, pilot, gate):
        conversation_id = app.open_state["id"]
        await pilot.press("T", "down", "down", "enter")  # team Support, Alice Ward · Billing, Cara Diaz · Billing
        assert app.cache.conversation(conversation_id)["assignee_id"] == cara
        assert app.query_one(QueueList).total == 1  # Cara's now: out of Alice's queue at once
        await wait_until(pilot, lambda: server_conversation(live_server, conversation_id).assignee_id == cara)
        assert server_conversation(live_server, conversation_id).team_id == live_server.world.teams["Billing"]
