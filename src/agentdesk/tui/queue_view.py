"""The queue's tab strip and filter picker: what the agent sees above the queue and picks with `f`. Pure text."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from agentdesk.domain.text import clean_line, safe_text
from agentdesk.store.queue import FILTER_HINT, FILTER_VALUES, SORT_NAMES, TAB_NAMES, TABS, Filters, QueueView, parse_filters
from agentdesk.tui.screens.pick import PickModal

COUNT_CAP = 1000  # the other tabs count up to here ("999+"): past it an exact number costs a full scan
SHORT_NAMES = {"mine": "Mine", "unassigned": "Unas.", "team": "Team", "all": "All"}
TINY_NAMES = {"mine": "M", "unassigned": "U", "team": "T", "all": "A"}
# From roomiest to tightest: (names, compact counts, padding around a tab)
FITS = ((TAB_NAMES, False, " "), (TAB_NAMES, True, " "), (SHORT_NAMES, True, " "), (TINY_NAMES, True, ""))


def count_label(count: int, capped: bool, compact: bool) -> str:
    if capped and count >= COUNT_CAP:
        return f"{COUNT_CAP - 1}+"
    if compact and count >= 1000:
        return f"{count // 1000}k"
    return f"{count:,}"


def tab_strip(counts: dict[str, int], view: QueueView, width: int) -> Text:
    """Two lines: the tabs with their counts (the current one highlighted), then the sort and the filter.
    Names shorten and counts compact until the tabs fit `width`."""
    for names, compact, pad in FITS:
        tabs = Text()
        for tab in TABS:
            label = f"{pad}{names[tab]} {count_label(counts.get(tab, 0), tab != view.tab, compact)}{pad}"
            tabs.append(label, style="bold reverse" if tab == view.tab else "dim")
            tabs.append(" ")
        tabs.rstrip()
        if tabs.cell_len <= width:
            break
    tabs.truncate(width)
    state = Text.assemble((f"by {SORT_NAMES[view.sort]}", "dim"))
    if view.filters:
        state.append(" · filter ", style="dim")
        state.append_text(safe_text(view.filters.text(), "bold magenta", one_line=True))  # tags are free text
    state.truncate(width)
    return Text("\n").join([tabs, state])


class TabStrip:
    """`tab_strip` laid out at whatever width the title has, so a resize re-fits it without a query."""

    def __init__(self, counts: dict[str, int], view: QueueView) -> None:
        self.counts, self.view = counts, view

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield tab_strip(self.counts, self.view, options.max_width)


def filter_choices(current: Filters) -> list[tuple[Text, Filters]]:
    """Quick picks: clear, then one value of each key added to (or replacing that key of) the current filter."""
    choices = [(Text("Clear filters", style="bold"), Filters())]
    for key, values in FILTER_VALUES.items():
        for value in values:
            choices.append((Text(f"{key}:{value}"), replace(current, **{key: (value,)})))
    return choices


class FilterModal(PickModal):
    """The filter picker starts in the text box (type `channel:sms tag:vip`, or enter on empty to clear);
    `tab` reaches the quick picks."""

    def __init__(self, current: Filters) -> None:
        heading = "Filter the queue" + (f" · now {clean_line(current.text(), 50)}" if current else "")
        super().__init__(heading, filter_choices(current), parse=parse_filters, placeholder=FILTER_HINT)

    def on_mount(self) -> None:  # runs before PickModal's (which focuses the list): focus the input after it
        self.call_after_refresh(self.query_one("#pick-input").focus)
