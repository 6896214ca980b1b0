"""Hostile customer text renders as visible literal text, never as markup or escape sequences."""

from __future__ import annotations

import pytest

from agentdesk.config import Settings
from agentdesk.desk import build_desk
from agentdesk.tui.widgets.queue import QueueList

HOSTILE = [
    "\x1b]52;c;cm0gLXJmIH4=\x07",  # OSC 52: write to the agent's clipboard
    "[@click=app.quit]x[/]",
    "ok [/] bye",
    "\x1b[2J",  # clear screen
]
VISIBLE = ["␛]52;c;cm0gLXJmIH4=␇", "[@click=app.quit]x[/]", "ok [/] bye", "␛[2J"]


def screen_lines(app) -> list[str]:
    strips = app.screen._compositor.render_strips()
    for strip in strips:
        for segment in strip:
            assert "\x1b" not in segment.text and not any(0x80 <= ord(c) < 0xA0 for c in segment.text), repr(segment.text)
    return ["".join(segment.text for segment in strip) for strip in strips]


@pytest.mark.parametrize("live_server", [HOSTILE], indirect=True)
async def test_hostile_names_subjects_and_bodies_render_literally(live_server, tmp_path):
    app = build_desk(Settings(), live_server.url, live_server.world.tokens["alice@example.com"], tmp_path)
    async with app.run_test(size=(160, 45)) as pilot:
        queue = app.query_one(QueueList)
        while queue.total < 2 + 2 * len(HOSTILE):
            await pilot.pause(0.05)
        seen = set()
        for index in range(queue.total):
            await pilot.press("j" if index else "k")
            await pilot.click("#timeline-title")
            await pilot.click(QueueList, offset=(5, 2 * queue.cursor - queue.scroll_offset.y))
            await pilot.click("#timeline", offset=(10, 5))
            await pilot.pause()
            text = "\n".join(screen_lines(app))
            seen |= {v for v in VISIBLE if v in text}
        assert app.is_running
        assert seen == set(VISIBLE)


def test_hostile_call_metadata_renders_inert():
    from rich.console import Console

    from agentdesk.store.cache import TimelineItem
    from agentdesk.tui.widgets.timeline import item_blocks

    item = TimelineItem(
        id="1", conversation_id="c", channel="phone", direction="inbound", author_name=None, text="hi",
        subject=None, meta={"call_direction": "\x1b[2J", "duration_s": "3m", "disposition": "\x9b1m", "transcript": 5},
        delivery_status=None, occurred_at="2026-11-23T10:00:00.000Z", outbox_state=None,
    )
    console = Console(width=80, record=True, force_terminal=False)
    for block in item_blocks(item, "\x1b]52;c;x\x07", __import__("datetime").datetime(2026, 11, 23, 10)):
        console.print(block)
    text = console.export_text()
    assert "\x1b" not in text and "\x9b" not in text
    assert "␛[2J" in text and "<9B>1m" in text and " ? " in text
