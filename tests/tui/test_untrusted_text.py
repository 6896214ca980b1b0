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
