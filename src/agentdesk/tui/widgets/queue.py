"""The queue: a virtual list that renders and queries only the visible window of conversations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from agentdesk.domain.clock import utcnow
from agentdesk.domain.text import safe_text
from agentdesk.store.cache import QueueRow
from agentdesk.tui.render import PRIORITY_STYLE, age, channel_label, customer_name, sla

ROW_HEIGHT = 2
WINDOW = 100  # rows fetched per query


class QueueList(ScrollView, can_focus=True):
    """Rows come from `fetch(offset, limit)` a window at a time; nothing outside the view is built."""

    DEFAULT_CSS = """
    QueueList { background: $surface; }
    QueueList > .queue--cursor { background: $accent 40%; }
    QueueList:focus > .queue--cursor { background: $accent 70%; }
    """
    COMPONENT_CLASSES = {"queue--cursor"}

    class Highlighted(Message):
        def __init__(self, row: QueueRow) -> None:
            super().__init__()
            self.row = row

    def __init__(self, fetch: Callable[[int, int], list[QueueRow]], count: Callable[[], int], **kw) -> None:
        super().__init__(**kw)
        self._fetch = fetch
        self._count = count
        self._rows: dict[int, QueueRow] = {}
        self.total = 0
        self.cursor = 0
        self.now: Callable[[], datetime] = utcnow

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
        self.virtual_size = Size(self.size.width, self.total * ROW_HEIGHT)
        self.refresh()

    def row(self, index: int) -> QueueRow | None:
        if not 0 <= index < self.total:
            return None
        if index not in self._rows:
            start = index - index % WINDOW
            if len(self._rows) > 4 * WINDOW:
                self._rows.clear()
            self._rows.update(enumerate(self._fetch(start, WINDOW), start))
        return self._rows.get(index)

    @property
    def current(self) -> QueueRow | None:
        return self.row(self.cursor) if self.total else None

    def move(self, delta: int) -> None:
        if not self.total:
            return
        self.cursor = max(0, min(self.total - 1, self.cursor + delta))
        self.scroll_to_region_of(self.cursor)
        self.refresh()
        if (row := self.current) is not None:
            self.post_message(self.Highlighted(row))

    def scroll_to_region_of(self, index: int) -> None:
        top, height = self.scroll_offset.y, self.scrollable_content_region.height
        y = index * ROW_HEIGHT
        if y < top:
            self.scroll_to(y=y, animate=False)
        elif y + ROW_HEIGHT > top + height:
            self.scroll_to(y=y + ROW_HEIGHT - height, animate=False)

    def on_click(self, event) -> None:  # noqa: ANN001
        index = (event.y + self.scroll_offset.y) // ROW_HEIGHT
        if 0 <= index < self.total:
            self.move(index - self.cursor)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        virtual_y = y + self.scroll_offset.y
        index, part = divmod(virtual_y, ROW_HEIGHT)
        row = self.row(index)
        if row is None:
            return Strip.blank(width, self.rich_style)
        text = self._first_line(row, width) if part == 0 else self._second_line(row, width)
        style = self.rich_style
        if index == self.cursor:
            style = style + self.get_component_rich_style("queue--cursor")
        segments = [Segment(s.text, style + s.style if s.style else style) for s in text.render(self.app.console)]
        return Strip(segments).crop_extend(0, width, style)

    def _first_line(self, row: QueueRow, width: int) -> Text:
        right = Text(f" {age(row.last_message_at, self.now())} ", style="dim")
        left = Text(f" {channel_label(row.channel):<10} ", style=PRIORITY_STYLE.get(row.priority, ""))
        name = customer_name(row.customer_name, limit=max(4, width - left.cell_len - right.cell_len))
        line = Text.assemble(left, name)
        line.truncate(max(0, width - right.cell_len), pad=True)
        return line + right

    def _second_line(self, row: QueueRow, width: int) -> Text:
        due = sla(row.sla_due, self.now())
        marker = Text(" ● " if row.assignee_id is None else "   ", style="cyan")
        preview = safe_text(row.preview, "dim", one_line=True, limit=max(4, width - due.cell_len - 5))
        line = Text.assemble(marker, preview)
        line.truncate(max(0, width - due.cell_len - 1), pad=True)
        return line + due + Text(" ")
