"""Search (`/`): every cached message and customer, live as the agent types (store/search.py).

The query runs in a worker thread on its own read-only connection, so a slow one (a short prefix over a
million messages) never stalls typing, and a newer keystroke interrupts it. Results are a virtual list: only
the visible rows are rendered, and further windows are read as the agent scrolls to them. Names and
snippets came from outside: they reach the screen only through safe_text.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from rich.segment import Segment
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.geometry import Size
from textual.screen import ModalScreen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from agentdesk.domain.clock import from_iso, utcnow
from agentdesk.domain.text import safe_text
from agentdesk.store.search import SearchHit, SearchResults, search
from agentdesk.tui.render import CHANNEL_ICON, age

DEBOUNCE = 0.15  # seconds of quiet typing before the query runs
WINDOW = 50  # hits read per query
ROW_HEIGHT = 2
HINT = "words · channel:sms · from:+1415… · status:open · tag:vip · is:note · before:/after:2026-10-01 · \"a phrase\""


def hit_lines(hit: SearchHit, width: int, now: datetime) -> tuple[Text, Text]:
    """A hit's two lines: icon, customer name and when; then the snippet with its matches highlighted."""
    icon = "☺" if hit.kind == "customer" else CHANNEL_ICON.get(hit.channel or "", "•")
    when = from_iso(hit.occurred_at)
    right = Text(f" {age(hit.occurred_at, now)} · {when.astimezone():%d %b %Y} " if when else " ", style="dim")
    label = " customer" if hit.kind == "customer" else {"note": " note", "outbound": " reply"}.get(hit.direction or "", "")
    left = Text.assemble(f" {icon} ", safe_text(hit.customer_name or "Unknown customer", "bold", one_line=True, limit=60), (label, "dim"))
    left.truncate(max(0, width - right.cell_len), pad=True)
    snippet = safe_text(hit.snippet, "", one_line=True)  # already one clean line: the spans still apply
    for start, end in hit.highlights:
        snippet.stylize("bold reverse", start, end)
    line = Text("   ") + snippet
    line.truncate(width)
    return left + right, line


class SearchResultsView(ScrollView):
    """The hits, a window at a time; the cursor is moved from the screen (focus stays in the input)."""

    DEFAULT_CSS = """
    SearchResultsView { background: $surface; height: 1fr; }
    SearchResultsView > .search--cursor { background: $accent 60%; }
    """
    COMPONENT_CLASSES = {"search--cursor"}

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.hits: list[SearchHit] = []
        self.has_more = False
        self.cursor = 0
        self.more = None  # callable(offset) -> SearchResults, for the windows after the first

    def show(self, results: SearchResults, more) -> None:  # noqa: ANN001
        self.hits, self.has_more, self.more, self.cursor = list(results), results.has_more, more, 0
        self.scroll_to(y=0, animate=False)
        self._resize()

    def _resize(self) -> None:
        self.virtual_size = Size(self.size.width, (len(self.hits) + self.has_more) * ROW_HEIGHT)
        self.refresh()

    def hit(self, index: int) -> SearchHit | None:
        while index >= len(self.hits) and self.has_more and self.more is not None:
            page = self.more(len(self.hits))
            self.hits.extend(page)
            self.has_more = page.has_more and bool(page)
            self._resize()
        return self.hits[index] if 0 <= index < len(self.hits) else None

    @property
    def current(self) -> SearchHit | None:
        return self.hit(self.cursor)

    def move(self, delta: int) -> None:
        if self.hit(self.cursor + delta) is None and delta > 0:
            delta = len(self.hits) - 1 - self.cursor
        self.cursor = max(0, min(len(self.hits) - 1, self.cursor + delta))
        top, height = self.scroll_offset.y, self.scrollable_content_region.height
        y = self.cursor * ROW_HEIGHT
        if y < top:
            self.scroll_to(y=y, animate=False)
        elif y + ROW_HEIGHT > top + height:
            self.scroll_to(y=y + ROW_HEIGHT - height, animate=False)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index, part = divmod(y + self.scroll_offset.y, ROW_HEIGHT)
        hit = self.hit(index)
        if hit is None:
            return Strip.blank(width, self.rich_style)
        text = hit_lines(hit, width, getattr(self.app, "clock", utcnow)())[part]  # the desk's clock (frozen in tests)
        style = self.rich_style
        if index == self.cursor:
            style = style + self.get_component_rich_style("search--cursor")
        segments = [Segment(s.text, style + s.style if s.style else style) for s in text.render(self.app.console)]
        return Strip(segments).crop_extend(0, width, style)

    def on_click(self, event) -> None:  # noqa: ANN001
        index = (event.y + self.scroll_offset.y) // ROW_HEIGHT
        if self.hit(index) is not None:
            self.move(index - self.cursor)


class SearchScreen(ModalScreen["SearchHit | None"]):
    """Dismisses with the hit to open (enter) or None (escape)."""

    DEFAULT_CSS = """
    SearchScreen { align: center top; }
    SearchScreen > #search-box { width: 100%; height: 100%; background: $surface; padding: 0 1; }
    SearchScreen #search-status { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("down", "move(1)", "Next", show=False),
        Binding("up", "move(-1)", "Previous", show=False),
        Binding("pagedown", "move(10)", show=False),
        Binding("pageup", "move(-10)", show=False),
        Binding("enter", "choose", "Open", priority=True),
    ]

    def __init__(self, cache_path: Path) -> None:
        super().__init__()
        self.cache_path = cache_path
        self._db: sqlite3.Connection | None = None
        self._timer: Timer | None = None
        self._query = ""

    def compose(self) -> ComposeResult:
        from textual.containers import Vertical

        with Vertical(id="search-box"):
            yield Input(placeholder="Search messages and customers…", id="search-input")
            yield Static(Text(HINT, style="dim"), id="search-status")
            yield SearchResultsView(id="search-results")

    def on_mount(self) -> None:
        # read-only and separate from the desk's connection: a long query runs beside the UI, interruptible
        self._db = sqlite3.connect(f"file:{self.cache_path}?mode=ro", uri=True, check_same_thread=False)
        self.query_one(Input).focus()

    def on_unmount(self) -> None:
        if self._db is not None:
            self._db.interrupt()
            self.workers.cancel_all()

    def on_input_changed(self, event: Input.Changed) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE, self.run_search)

    def run_search(self) -> None:
        self._query = self.query_one(Input).value
        if self._db is not None:
            self._db.interrupt()  # an older query still running gives way
        self._search(self._query)

    @work(thread=True, exclusive=True, group="search")
    def _search(self, text: str) -> None:
        worker = get_current_worker()
        for _attempt in range(3):  # an interrupt meant for the query before this one can catch this one too
            try:
                results = search(self._db, text, limit=WINDOW, typing=True)
                break
            except sqlite3.OperationalError as exc:
                if worker.is_cancelled:  # a newer query replaced this one
                    return
                results = SearchResults(problems=(f"Search failed: {exc}",))
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show, text, results)

    def _more(self, text: str, offset: int) -> SearchResults:
        try:
            return search(self._db, text, limit=WINDOW, offset=offset, typing=True)
        except sqlite3.OperationalError:  # interrupted by a newer search: that one replaces this list
            return SearchResults()

    def _show(self, text: str, results: SearchResults) -> None:
        if text != self.query_one(Input).value or not self.is_mounted:
            return  # the agent typed on: a newer search follows
        self.query_one(SearchResultsView).show(results, lambda offset: self._more(text, offset))
        self.query_one("#search-status", Static).update(self._status(text, results))

    def _status(self, text: str, results: SearchResults) -> Text:
        if results.problems:
            return safe_text(" · ".join(results.problems), "yellow", one_line=True)
        if not text.strip():
            return Text(HINT, style="dim")
        if not results:
            return Text("No matches.", style="dim")
        count = f"{len(results)}{'+' if results.has_more else ''} {'match' if len(results) == 1 and not results.has_more else 'matches'}"
        order = "newest first" if results.newest_first else "many matches, most recently synced first: add words to narrow"
        return Text(f"{count} · {order} · ↑↓ move · enter opens · escape closes", style="dim")

    def action_move(self, delta: int) -> None:
        self.query_one(SearchResultsView).move(delta)

    def action_choose(self) -> None:
        text = self.query_one(Input).value
        if text != self._query:  # typed faster than the debounce: search now, for what is typed
            if self._timer is not None:
                self._timer.stop()
            self._query = text
            self.workers.cancel_group(self, "search")
            self._show(text, self._more(text, 0))
        hit = self.query_one(SearchResultsView).current
        if hit is not None:
            self.dismiss(hit)
