"""The queue's tabs, filters, sorts and row markers, driven through the desk's keys on a cache-only desk."""

from __future__ import annotations

from contextlib import asynccontextmanager

from queue_world import ME, NOW, build

from agentdesk.tui.app import AgentDesk
from agentdesk.tui.queue_view import FilterModal
from agentdesk.tui.widgets.queue import QueueList

HOSTILE = ["\x1b]52;c;cm0gLXJmIH4=\x07", "[@click=app.quit]x[/]", "ok [/] bye", "\x1b[2J", "[ @click=app.quit]y[/]"]
VISIBLE = ["␛]52;c;cm0gLXJmIH4=␇", "[@click=app.quit]x[/]", "ok [/] bye", "␛[2J", "[ @click=app.quit]y[/]"]


@asynccontextmanager
async def desk(tmp_path, size=(150, 40), **overrides):
    app = AgentDesk(build(tmp_path / "cache.sqlite3", **overrides), ME, engine=None, clock=lambda: NOW)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        yield app, pilot


def screen_lines(app) -> list[str]:
    lines = []
    for strip in app.screen._compositor.render_strips():
        text = "".join(segment.text for segment in strip)
        assert "\x1b" not in text and not any(0x80 <= ord(c) < 0xA0 for c in text), repr(text)
        lines.append(text)
    return lines


def queue_text(app) -> str:
    """The queue pane's part of the screen (left of the divider)."""
    width = app.query_one("#queue-pane").outer_size.width
    return "\n".join(line[:width] for line in screen_lines(app))


def listed(app) -> list[str]:
    queue = app.query_one(QueueList)
    return [queue.row(i).id for i in range(queue.total)]


def row_line(app, customer: str) -> str:
    return next(line for line in queue_text(app).splitlines() if customer in line)


async def test_tabs_show_their_counts_and_cycle_with_tab_and_shift_tab(tmp_path):
    async with desk(tmp_path) as (app, pilot):
        strip = queue_text(app).splitlines()[1]
        for label in ("Mine 2", "Unassigned 2", "Team 5", "All 8"):
            assert label in strip
        assert app.queue_view.tab == "mine"  # the agent has work assigned: the desk opens on it
        assert listed(app) == ["c-mine-mail", "c-mine-sms"]
        await pilot.press("tab")
        assert app.queue_view.tab == "unassigned" and listed(app) == ["c-free-chat", "c-free-call"]
        assert "Cy Park" in queue_text(app) and "Ana Lima" not in queue_text(app)
        await pilot.press("tab", "tab")
        assert app.queue_view.tab == "all" and len(listed(app)) == 8 and "closed" in queue_text(app)
        await pilot.press("tab")
        assert app.queue_view.tab == "mine"
        await pilot.press("shift+tab")
        assert app.queue_view.tab == "all"


async def test_the_current_tab_is_highlighted(tmp_path):
    async with desk(tmp_path) as (app, pilot):
        await pilot.press("tab")
        strip = app.screen._compositor.render_strips()[1]
        styled = {segment.text.strip(): segment.style for segment in strip if segment.text.strip()}
        current = next(s for text, s in styled.items() if text.startswith("Unassigned"))
        other = next(s for text, s in styled.items() if text.startswith("Mine"))
        assert current.reverse or current.bgcolor != other.bgcolor


async def test_tab_switches_tabs_from_the_timeline_but_not_from_the_composer(tmp_path):
    async with desk(tmp_path) as (app, pilot):
        await pilot.press("enter")  # the timeline has focus
        await pilot.press("tab")
        assert app.queue_view.tab == "unassigned"
        await pilot.press("r")  # into the composer: tab there is the composer's (it moves focus), never the queue's
        assert app.focused is not None and app.focused.id == "reply"
        await pilot.press("tab")
        assert app.queue_view.tab == "unassigned"


async def test_filter_by_typing_then_clear_with_an_empty_input(tmp_path):
    async with desk(tmp_path) as (app, pilot):
        await pilot.press("tab", "tab")  # Team
        await pilot.press("f")
        assert isinstance(app.screen, FilterModal)
        await pilot.press(*"tag:vip", "enter")
        assert listed(app) == ["c-sams", "c-free-chat"]
        assert "filter tag:vip" in queue_text(app).splitlines()[2]
        assert "Team 2" in queue_text(app).splitlines()[1]
        await pilot.press("f")
        await pilot.press(*"channel:fax", "enter")  # a mistake is explained in place, the modal stays
        assert isinstance(app.screen, FilterModal) and "channel is one of" in "\n".join(screen_lines(app))
        await pilot.press("escape")
        assert listed(app) == ["c-sams", "c-free-chat"]  # escape keeps the filter
        await pilot.press("f", "enter")  # empty input: cleared
        assert len(listed(app)) == 5 and "filter" not in queue_text(app).splitlines()[2]


async def test_filter_quick_pick_adds_to_the_filter(tmp_path):
    async with desk(tmp_path) as (app, pilot):
        await pilot.press("tab", "tab", "f")
        await pilot.press(*"priority:urgent,high", "enter")
        await pilot.press("f", "shift+tab")  # from the input back to the quick picks
        await pilot.press("down", "down", "down", "enter")  # Clear, email, sms, whatsapp
        assert app.queue_view.filters.text() == "channel:whatsapp priority:urgent,high"
        assert listed(app) == []
        assert "no conversation" not in queue_text(app)  # an empty list is just empty (and the strip says 0)
        assert "Team 0" in queue_text(app).splitlines()[1]


async def test_sort_cycles_sla_newest_priority(tmp_path):
    async with desk(tmp_path) as (app, pilot):
        await pilot.press("tab", "tab")
        assert listed(app)[0] == "c-mine-mail" and "by SLA due" in queue_text(app)
        await pilot.press("S")
        assert listed(app)[0] == "c-free-chat" and "by newest" in queue_text(app)
        await pilot.press("S")
        assert listed(app)[:2] == ["c-free-chat", "c-mine-mail"] and "by priority" in queue_text(app)
        await pilot.press("S")
        assert app.queue_view.sort == "sla"


async def test_rows_show_channel_customer_preview_age_sla_and_assignee(tmp_path):
    async with desk(tmp_path) as (app, pilot):
        await pilot.press("tab", "tab")
        text = queue_text(app)
        assert "✉ Email" in row_line(app, "Ben Okoro") and "5h" in row_line(app, "Ben Okoro")  # age of the last message
        lines = text.splitlines()
        second = lines[lines.index(row_line(app, "Ben Okoro")) + 1]
        assert "latest words of c-mine-mail" in second and "pending · you · SLA -1h" in second
        sams = lines[lines.index(row_line(app, "Eve Stone")) + 1]
        assert "Sam Lee · SLA 1h" in sams
        cy = lines[lines.index(row_line(app, "Cy Park")) + 1]
        assert "unassigned · SLA 5h" in cy


async def test_unread_marker_clears_when_the_conversation_is_opened(tmp_path):
    async with desk(tmp_path) as (app, pilot):
        assert row_line(app, "Ben Okoro").startswith(" ")  # row 0: opened with the desk, so read
        assert row_line(app, "Ana Lima").startswith("●")
        await pilot.press("j")
        assert row_line(app, "Ana Lima").startswith(" ")
        await pilot.press("tab")  # still read after a reload from the cache
        await pilot.press("shift+tab")
        assert row_line(app, "Ana Lima").startswith(" ") and row_line(app, "Ben Okoro").startswith(" ")


async def test_viewing_marker_for_conversations_another_agent_has_open(tmp_path):
    async with desk(tmp_path) as (app, pilot):
        await pilot.press("tab", "tab")
        presence = app.sync_status.presence
        presence.apply("presence", {"agent_id": "a-sam", "status": "online", "viewing": "c-free-call"})
        presence.apply("presence", {"agent_id": ME.agent_id, "status": "online", "viewing": "c-mine-mail"})
        app.refresh_presence()
        await pilot.pause()
        assert "◉" in row_line(app, "Dee Moss")
        assert "◉" not in row_line(app, "Ben Okoro")  # my own viewing is not "someone else"
        presence.apply("presence", {"agent_id": "a-sam", "status": "online", "viewing": None})
        app.refresh_presence()
        await pilot.pause()
        assert "◉" not in queue_text(app)


async def test_hostile_names_previews_and_tags_render_literally_in_rows_and_strip(tmp_path):
    names = {"cu-ana": HOSTILE[0], "cu-ben": HOSTILE[1], "cu-cy": HOSTILE[2], "cu-dee": HOSTILE[3], "cu-eve": HOSTILE[4]}
    previews = {"c-mine-sms": HOSTILE[1], "c-free-chat": HOSTILE[0], "c-sams": HOSTILE[3], "c-free-call": HOSTILE[4]}
    async with desk(tmp_path, size=(200, 40), names=names, previews=previews,
                    tags={"c-sams": ["[@click=app.quit]x[/]"]}) as (app, pilot):
        await pilot.press("tab", "tab")  # Team: every hostile row
        seen = set()
        for index in range(app.query_one(QueueList).total):
            await pilot.click(QueueList, offset=(3, 2 * index))
            await pilot.click(QueueList, offset=(20, 2 * index + 1))
            seen |= {v for v in VISIBLE if v in queue_text(app)}
        assert app.is_running and seen == set(VISIBLE)
        await pilot.press("f", *"tag:[@click=app.quit]x[/]", "enter")  # the agent's own filter text, shown inert
        assert listed(app) == ["c-sams"]
        assert "filter tag:[@click=app.quit]x[/]" in queue_text(app)
        await pilot.click("#queue-title", offset=(30, 1))
        assert app.is_running
