"""Sizes: the desk from 80x24 to wall-sized terminals.

Textual puts one breakpoint class per axis on every screen as the terminal resizes (App.HORIZONTAL_BREAKPOINTS,
VERTICAL_BREAKPOINTS); app.tcss shapes the panes by them:

- ``-narrow`` (under 100 columns): the queue pane narrows to a compact list, the footer packs its keys;
- ``-medium`` (100-179 columns): the default split;
- ``-wide`` (180 columns and more): the queue pane may grow;
- ``-short`` (under 32 rows): the composer drops its borders and keeps a few lines, so the timeline stays in view;
- ``-tall``: the full composer.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

NARROW_BELOW = 100  # columns: 80 is the smallest terminal the desk is made for
WIDE_FROM = 180
SHORT_BELOW = 32  # rows: 24 is the smallest

HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-medium"), (WIDE_FROM, "-wide")]
VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_BELOW, "-tall")]


def show_line(static: Any, text: Text, *, layout: bool = False) -> None:
    """Put `text` in a Static whose box does not depend on its text (a fixed height, a width from its pane),
    only when it changes: Static.update asks for a relayout of the whole screen (~40 ms at 160x45) unless told
    not to. `layout=True` for a Static sized by its text (width: auto)."""
    shown = (text.plain, str(text.style), tuple(text.spans))  # Text's own == ignores its style
    if getattr(static, "_shown_line", None) != shown:
        static._shown_line = shown
        static.update(text, layout=layout)
