"""The merged timeline: one customer's interactions across every conversation and channel."""

from __future__ import annotations

from datetime import datetime

from rich.console import RenderableType
from rich.padding import Padding
from rich.segment import Segment
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from agentdesk.domain.clock import from_iso
from agentdesk.domain.text import safe_text
from agentdesk.store.cache import TimelineItem
from agentdesk.tui.render import STATUS_ICON, channel_label, span

DIRECTION = {"inbound": "←", "outbound": "→", "note": "✎"}


def duration(seconds: object) -> str:
    """Call length from channel metadata, which arrives from outside: anything unreadable shows as '?'."""
    try:
        return span(float(seconds or 0))
    except (TypeError, ValueError, OverflowError):
        return "?"


def own_words(item: TimelineItem) -> tuple[str, bool]:
    """An email's text without the quoted history the server found (meta quote_at); True when folded."""
    at = item.meta.get("quote_at") if item.channel == "email" and isinstance(item.meta, dict) else None
    if isinstance(at, int) and not isinstance(at, bool) and 0 < at < len(item.text):
        return item.text[:at].rstrip(), True
    return item.text, False


def item_blocks(item: TimelineItem, customer: str, local: datetime) -> list[RenderableType]:
    """One interaction: a heading line and an indented body; untrusted parts only through safe_text."""
    who = safe_text(item.author_name or "Agent", "bold") if item.direction != "inbound" else safe_text(customer, "bold cyan")
    head = Text.assemble(
        (f" {local:%H:%M} ", "dim"), (f"{channel_label(item.channel)} {DIRECTION.get(item.direction, '')} ", ""), who
    )
    status = item.outbox_state or item.delivery_status
    if item.direction == "outbound" and status:
        head.append(f"  {STATUS_ICON.get(status, status)}", style="red" if status == "failed" else "green")
    if item.direction == "note":
        head.append("  internal note", style="italic yellow")
    body: list[Text] = []
    if item.channel == "phone":
        meta = item.meta
        kind = str(meta.get("call_direction") or "") + " call"
        direction = safe_text(kind[:1].upper() + kind[1:], "magenta", one_line=True, limit=30)
        body.append(direction + Text.assemble((f" · {duration(meta.get('duration_s'))} · ", "magenta"), safe_text(meta.get("disposition", ""), "magenta", one_line=True, limit=40)))
    if status == "failed" and item.meta.get("delivery_error"):  # the provider's reason; R sends it again
        body.append(Text.assemble(("Not delivered: ", "bold red"), safe_text(str(item.meta["delivery_error"]), "red", limit=300)))
    if item.subject:
        body.append(Text.assemble(("Subject: ", "dim"), safe_text(item.subject, "italic")))
    text, folded = own_words(item)
    body.append(safe_text(text, "italic yellow" if item.direction == "note" else ""))
    if folded:
        body.append(Text("… quoted text hidden", style="dim italic"))
    if item.channel == "phone" and item.meta.get("transcript"):
        body.append(safe_text(item.meta["transcript"], "dim italic"))
    return [head, Padding(Text("\n").join(body), (0, 1, 0, 7))]


class Timeline(ScrollView, can_focus=True):
    """Renders pre-wrapped lines for the open customer; newest at the bottom."""

    DEFAULT_CSS = "Timeline { background: $surface; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._blocks: list[RenderableType] = []
        self._lines: list[Strip] = []
        self._width = 0

    def show(self, customer_name: str, items: list[TimelineItem]) -> None:
        blocks: list[RenderableType] = []
        day = conversation = None
        for item in items:
            when = from_iso(item.occurred_at).astimezone()
            if when.date() != day:
                day = when.date()
                blocks.append(Text(f"── {when:%a %d %b %Y} ──", style="bold dim", justify="center"))
            if item.conversation_id != conversation:
                conversation = item.conversation_id
                blocks.append(Text(f"┌ conversation · {channel_label(item.channel)}", style="dim cyan"))
            blocks.extend(item_blocks(item, customer_name, when))
        self._blocks = blocks
        self._layout(force=True)
        self.scroll_end(animate=False)

    def on_resize(self) -> None:
        self._layout()

    def _layout(self, force: bool = False) -> None:
        width = max(10, self.scrollable_content_region.width)
        if width == self._width and not force:
            return
        self._width = width
        console = self.app.console
        options = console.options.update_width(width)
        self._lines = [Strip(line) for block in self._blocks for line in console.render_lines(block, options, pad=False)]
        self.virtual_size = Size(width, len(self._lines))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        index = y + self.scroll_offset.y
        width = self.scrollable_content_region.width
        if 0 <= index < len(self._lines):
            line = self._lines[index]
            return Strip([Segment(s.text, self.rich_style + s.style if s.style else self.rich_style) for s in line]).crop_extend(0, width, self.rich_style)
        return Strip.blank(width, self.rich_style)
