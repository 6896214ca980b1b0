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

NARROW_BELOW = 100  # columns: 80 is the smallest terminal the desk is made for
WIDE_FROM = 180
SHORT_BELOW = 32  # rows: 24 is the smallest

HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-medium"), (WIDE_FROM, "-wide")]
VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_BELOW, "-tall")]
