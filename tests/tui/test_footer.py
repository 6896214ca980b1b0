"""The footer follows the keys that apply, and is rebuilt only when they change (not on every focus move)."""

from __future__ import annotations

import pytest
from fixed_desk import fixed_desk, fixed_environment
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from agentdesk.tui.widgets.queue import QueueList
from agentdesk.tui.widgets.timeline import Timeline


@pytest.fixture
def desk(tmp_path):
    with fixed_environment():
        yield fixed_desk(tmp_path)


def footer_keys(app) -> list[FooterKey]:
    return list(app.query_one(Footer).query(FooterKey))


async def test_focus_moves_that_keep_the_keys_rebuild_nothing(desk):
    async with desk.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        shown = footer_keys(desk)
        assert "q" in [key.key for key in shown]
        await pilot.press("enter")  # the queue to the timeline: the same keys apply
        await pilot.pause()
        assert isinstance(desk.focused, Timeline) and footer_keys(desk) == shown
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(desk.focused, QueueList) and footer_keys(desk) == shown


async def test_the_footer_follows_the_keys_that_apply(desk):
    async with desk.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        await pilot.press("r")  # into the reply: letters are text there, the desk's letter keys go
        await pilot.pause()
        keys = [key.key for key in footer_keys(desk)]
        assert "ctrl+s" in keys and "q" not in keys and "e" not in keys
        await pilot.press("escape")  # back in the queue: all of them again
        await pilot.pause()
        assert {"q", "e", "ctrl+s"} <= {key.key for key in footer_keys(desk)}
