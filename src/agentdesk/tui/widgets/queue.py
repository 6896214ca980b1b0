"""The queue: a virtual list that renders and queries only the visible window of conversations.

A row is two lines:  ● ✉ Email     María López            ◉ 3m     (unread · channel · customer · viewed · age)
                       Where is my refund?…   you · SLA 12m      (preview · state · assignee · SLA)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip

from agentdesk.domain.clock import utcnow
from agentdesk.domain.text import safe_text
from agentdesk.store.queue import QueueRow
from agentdesk.tui.render import PRIORITY_STYLE, STATUS_STYLE, age, channel_label, customer_name, sla
from agentdesk.tui.widgets.lines import LineView, fitted

ROW_HEIGHT = 2
WINDOW = 100  # rows fetched per query
LINES_KEPT = 400  # rendered lines kept (a few screens): moving the cursor re-renders only its two rows


class QueueList(LineView, can_focus=True):
    """Rows come from `fetch(offset, limit, total)` a window at a time; nothing outside the view is built."""

    DEFAULT_CSS = """
    QueueList { background: $surface; }
    QueueList > .queue--cursor { background: $accent 40%; }
    QueueList:focus > .queue--cursor { background: $accent 70%; }
    """
    COMPONENT_CLASSES = {"queue--cursor"}

    def __init__(
        self,
        fetch: Callable[[int, int, int], list[QueueRow]],
        count: Callable[[], int],
        moved: Callable[[QueueRow], None] = lambda row: None,
        **kw,
    ) -> None:
        super().__init__(**kw)
        self._fetch = fetch
        self._count = count
        self._moved = moved  # told of each move (a key, a click) while it is handled, so what it opens is in the same frame
        self._rows: dict[int, QueueRow] = {}
        self.total = 0
        self.cursor = 0
        self.now: Callable[[], datetime] = utcnow
        self.me: str | None = None  # the agent's id: their own rows say "you"
        self.viewed: frozenset[str] = frozenset()  # conversations another agent has open (live presence)
        self._lines: dict[tuple, list[Segment]] = {}  # what a line shows (_shows) -> its segments
        self._painted: dict[tuple, Strip] = {}  # (what it shows, the style it is painted in) -> the line as painted

    def reload(self) -> None:
        """The cache changed: recount, drop the window, keep the cursor on the same conversation."""
        current = self.current
        self.total = self._count()
        self._rows.clear()
        if current is not None:
            for index in range(max(0, self.cursor - 5), min(self.total, self.cursor + 6)):
                row = self.row(index)
                if row is not None and row.id == current.id:
                    self.cursor = index
                    break
        self.cursor = max(0, min(self.cursor, self.total - 1))
        self.set_virtual_size(Size(self.size.width, self.total * ROW_HEIGHT))
        self.refresh()

    def mark_read(self, conversation_id: str) -> None:
        """The conversation was opened: drop its unread marker in the rows held, without a query."""
        for index, row in self._rows.items():
            if row.id == conversation_id and row.unread:
                self._rows[index] = replace(row, unread=False)
                self.refresh_lines(index * ROW_HEIGHT, ROW_HEIGHT)  # its row alone, not the whole list

    def set_viewed(self, viewed: frozenset[str]) -> None:
        if viewed != self.viewed:
            self.viewed = viewed
            self.refresh()

    def row(self, index: int) -> QueueRow | None:
        if not 0 <= index < self.total:
            return None
        if index not in self._rows:
            start = index - index % WINDOW
            if len(self._rows) > 4 * WINDOW:
                self._rows.clear()
            self._rows.update(enumerate(self._fetch(start, WINDOW, self.total), start))
        return self._rows.get(index)

    @property
    def current(self) -> QueueRow | None:
        return self.row(self.cursor) if self.total else None

    def move(self, delta: int) -> None:
        if not self.total:
            return
        old, self.cursor = self.cursor, max(0, min(self.total - 1, self.cursor + delta))
        self.paint_first()
        if not self.scroll_to_region_of(self.cursor):  # in view: repaint the two rows, not the whole list
            self.refresh_lines(old * ROW_HEIGHT, ROW_HEIGHT)
            self.refresh_lines(self.cursor * ROW_HEIGHT, ROW_HEIGHT)
        if (row := self.current) is not None:
            self._moved(row)

    # Paging keys move the cursor a page (or to an end), which opens that conversation, as j/k do; Textual's
    # ScrollView would scroll the rows away from the cursor, animated.
    def action_page_down(self) -> None:
        self._move_to(self.cursor + self._page())

    def action_page_up(self) -> None:
        self._move_to(self.cursor - self._page())

    def action_scroll_home(self) -> None:
        self._move_to(0)

    def action_scroll_end(self) -> None:
        self._move_to(self.total - 1)

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height // ROW_HEIGHT - 1)

    def _move_to(self, index: int) -> None:
        index = max(0, min(self.total - 1, index))
        if index != self.cursor:
            self.move(index - self.cursor)

    def scroll_to_region_of(self, index: int) -> bool:
        """Scroll row `index` into view; True when that scrolled (and so repaints the list)."""
        top, height = self.scroll_offset.y, self.scrollable_content_region.height
        y = index * ROW_HEIGHT
        if y < top:
            self.scroll_now(y)
        elif y + ROW_HEIGHT > top + height:
            self.scroll_now(y + ROW_HEIGHT - height)
        else:
            return False
        self.refresh()
        return True

    def on_click(self, event) -> None:  # noqa: ANN001
        index = (event.y + self.scroll_offset.y) // ROW_HEIGHT
        if 0 <= index < self.total:
            self.move(index - self.cursor)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        virtual_y = y + self.scroll_offset.y
        index, part = divmod(virtual_y, ROW_HEIGHT)
        row = self.row(index)
        style = self.line_style
        if row is None:
            return Strip.blank(width, style)
        if index == self.cursor:
            style = style + self.get_component_rich_style("queue--cursor")
        key, clock = self._shows(row, part, width)
        if (strip := self._painted.get((key, style))) is None:  # a scroll repaints every line: most are kept
            if len(self._painted) >= LINES_KEPT:
                self._painted.clear()
            segments = [Segment(s.text, style + s.style if s.style else style) for s in self._line(key, clock)]
            strip = self._painted[key, style] = fitted(segments, width, style)
        return strip

    def _shows(self, row: QueueRow, part: int, width: int) -> tuple[tuple, str | Text]:
        """What a line shows (the row as read, its width, its clock text and the viewed marker), and its clock:
        the age, or the SLA countdown. A line is rendered again when its clock text ticks over, not every second."""
        now = self.now()
        if part == 0:
            clock: str | Text = age(row.last_message_at, now)
        else:
            clock = sla(row.sla_due, now) if row.status in ("open", "pending") else Text("")
        return (row, part, width, str(clock), row.id in self.viewed), clock

    def _line(self, key: tuple, clock: str | Text) -> list[Segment]:
        """A line rendered (Rich's cell measuring and cropping are the costly part) once for what it shows."""
        if (segments := self._lines.get(key)) is None:
            if len(self._lines) >= LINES_KEPT:
                self._lines.clear()
            row, _, width = key[:3]
            text = self._first_line(row, width, clock) if isinstance(clock, str) else self._second_line(row, width, clock)
            segments = self._lines[key] = list(text.render(self.app.console))
        return segments

    def _first_line(self, row: QueueRow, width: int, age_text: str) -> Text:
        unread = Text("●" if row.unread else " ", style="bold cyan")
        left = Text(f"{channel_label(row.channel):<10} ", style=PRIORITY_STYLE.get(row.priority, ""))
        viewed = Text("◉ " if row.id in self.viewed else "", style="bold magenta")
        right = Text.assemble(viewed, (f"{age_text} ", "dim"))
        name = customer_name(row.customer_name, limit=max(4, width - 2 - left.cell_len - right.cell_len))
        line = Text.assemble(unread, left, name)
        line.truncate(max(0, width - right.cell_len), pad=True)
        return line + right

    def _second_line(self, row: QueueRow, width: int, due: Text) -> Text:
        parts = [] if row.status == "open" or width < 40 else [Text(row.status, style=STATUS_STYLE.get(row.status, ""))]
        parts.append(self._assignee(row))
        if due.cell_len:
            parts.append(due)
        right = Text()  # (Text.join would give the whole line the separator's dim style)
        for part in parts:
            right.append_text(Text(" · ", style="dim") if right else Text())
            right.append_text(part)
        right.append(" ")
        preview = safe_text(row.preview, "dim", one_line=True, limit=max(4, width - right.cell_len - 4))
        line = Text.assemble("  ", preview)
        line.truncate(max(0, width - right.cell_len - 1), pad=True)
        return line + Text(" ") + right

    def _assignee(self, row: QueueRow) -> Text:
        if row.assignee_id is None:
            return Text("unassigned", style="cyan")
        if row.assignee_id == self.me:
            return Text("you", style="bold")
        return safe_text(row.assignee_name or "someone", one_line=True, limit=max(6, min(16, self.size.width // 4)))
