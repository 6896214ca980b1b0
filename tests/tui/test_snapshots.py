"""SVG snapshots of the desk (frozen clock, fixed rows, UTC, true colour): the main screen small and large, the
composer in SMS and in email mode, search and help.

They fail when what the agent sees changes. After a deliberate change, look at the new pictures and accept them:
    PYTHONPATH=src pytest tests/tui/test_snapshots.py --snapshot-update
(`--snapshot-report` writes an HTML page showing each failed snapshot beside the accepted one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import pytest
from fixed_desk import fixed_desk, fixed_environment
from textual.pilot import Pilot
from textual.widgets import Input, TextArea

SMALL, LARGE = (80, 24), (160, 45)


@pytest.fixture
def desk(tmp_path):
    with fixed_environment():
        yield lambda: fixed_desk(tmp_path)


def steps(*keys: str, typing: str = "") -> Callable[[Pilot], Awaitable[None]]:
    """Press keys, type text, then hold every text cursor still so the picture does not depend on the blink."""

    async def run(pilot: Pilot) -> None:
        await pilot.pause()
        await pilot.press(*keys)
        if typing:
            await type_into_focus(pilot, typing)
        await pilot.pause()
        for screen in pilot.app.screen_stack:
            for field in screen.query("TextArea, Input"):
                if isinstance(field, TextArea | Input):
                    field.cursor_blink = False
        await pilot.pause()

    return run


async def type_into_focus(pilot: Pilot, text: str) -> None:
    """What typing would put in the focused field, in one edit (a key press per character takes seconds)."""
    focused = pilot.app.focused
    if isinstance(focused, TextArea):
        focused.insert(text)
    elif isinstance(focused, Input):
        focused.insert_text_at_cursor(text)
    else:
        await pilot.press(*text)
    await pilot.pause()


def snapshot(snap_compare, app, size: tuple[int, int], keys: Iterable[str] = (), typing: str = "") -> bool:
    return snap_compare(app, terminal_size=size, run_before=steps(*keys, typing=typing))


def test_main_screen_80x24(snap_compare, desk):
    assert snapshot(snap_compare, desk(), SMALL)


def test_main_screen_160x45(snap_compare, desk):
    assert snapshot(snap_compare, desk(), LARGE)


def test_composer_sms(snap_compare, desk):
    """Zoë's SMS conversation (first in the queue), a reply being typed: characters, encoding, segments."""
    assert snapshot(snap_compare, desk(), LARGE, ["r"], typing="Refund done: the second charge is gone within 3-5 days.")


def test_composer_email(snap_compare, desk):
    """Grace's email conversation (second in the queue): subject, to/cc, the reply being typed."""
    assert snapshot(snap_compare, desk(), LARGE, ["j", "r"], typing="Hi Grace, the October invoice is attached.")


def test_search(snap_compare, desk):
    assert snapshot(snap_compare, desk(), LARGE, ["slash"], typing="refund")


def test_help(snap_compare, desk):
    assert snapshot(snap_compare, desk(), LARGE, ["question_mark"])
