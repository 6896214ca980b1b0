"""The merged timeline: one customer's interactions across every conversation and channel.

Virtual, twice over: a customer may have 100k interactions, so the widget holds a window of at most MAX_ITEMS
of them (read by key, store/timeline.py), and of those it lays out (wraps with Rich, the costly part) only a
range around the viewport, grown a page at a time as the agent scrolls — fetching the next window from the
cache when the range reaches the window's end. Each interaction's lines are kept until it, the width or the
expand toggle changes, so a live update re-renders only what changed, and an anchor (the interaction at the top
of the view) keeps the viewport still while lines are added or dropped above it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.actions import SkipAction
from textual.geometry import Size
from textual.strip import Strip
from textual.timer import Timer

from agentdesk.domain.clock import from_iso
from agentdesk.domain.text import safe_text
from agentdesk.store.timeline import CustomerTimeline, Position, TimelineItem
from agentdesk.tui.render import STATUS_ICON, STATUS_STYLE, channel_label, span
from agentdesk.tui.widgets.lines import LineView, fitted

DIRECTION = {"inbound": "←", "outbound": "→", "note": "✎"}
WINDOW = 200  # interactions read at open, and per step when the agent scrolls past the loaded ones
MAX_ITEMS = 3 * WINDOW  # held at once: past this the far end is dropped, so memory stays bounded
MAX_LAID = WINDOW  # laid out at once (at most; usually a few pages' worth)
PAINTED_KEPT = 400  # lines kept as painted (scrolling repaints every line in view); past this, painted afresh
EDGE = 15  # lines from the top (bottom) of the laid-out range at which more is laid out (or loaded)
TRANSCRIPT_LINES = 2  # of a call's transcript, until `x` expands it
HIGHLIGHT_SECONDS = 2.0  # how long a revealed interaction stays highlighted
INDENT = 7
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # where an interaction without a time would sit

Anchor = tuple[str, int]  # (interaction id, line within its block): a place on the timeline that survives reloads


# --- one interaction as renderables (pure: also used by tests and anything that prints a timeline) ------------


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


def addresses(value: object) -> str:
    """To/Cc as channel metadata holds them (a list of addresses, or one); anything else shows nothing."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        more = f" (+{len(value) - 10})" if len(value) > 10 else ""
        return ", ".join(str(v) for v in value[:10]) + more
    return ""


class Clamp:
    """The first `lines` lines of a text as wrapped at the width it gets, and a hint when more is hidden."""

    def __init__(self, text: Text, lines: int, more: str) -> None:
        self.text, self.lines, self.more = text, lines, more

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.text, options, pad=False)
        for line in lines[: self.lines]:
            yield from line
            yield Segment.line()
        if len(lines) > self.lines:
            yield Text(self.more, style="dim italic")


class LeftBar:
    """Renderables behind a coloured bar on every line: how an internal note stands apart from messages."""

    def __init__(self, renderables: list[RenderableType], style: str) -> None:
        self.renderables, self.style = renderables, Style.parse(style)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        inner = options.update_width(max(1, options.max_width - 2))
        for renderable in self.renderables:
            for line in console.render_lines(renderable, inner, pad=False):
                yield Segment("▌ ", self.style)
                yield from line
                yield Segment.line()


def email_headers(item: TimelineItem) -> list[Text]:
    """Subject and From/To/Cc of an email, as the server stored them in its metadata (all untrusted)."""
    lines = []
    if item.subject:
        lines.append(Text.assemble(("Subject: ", "dim"), safe_text(item.subject, "italic", one_line=True, limit=200)))
    meta = item.meta
    sender = meta.get("from") or (meta.get("address") if item.direction == "inbound" else None)
    parties = [("From", addresses(sender)), ("To", addresses(meta.get("to"))), ("Cc", addresses(meta.get("cc")))]
    shown = [Text.assemble((f"{label}: ", "dim"), safe_text(value, "dim", one_line=True, limit=160)) for label, value in parties if value]
    if shown:
        lines.append(Text("  ").join(shown))
    return lines


def call_lines(item: TimelineItem, expanded: bool) -> list[RenderableType]:
    """A call: direction, length and disposition, then its transcript (the first lines until expanded)."""
    meta = item.meta
    kind = str(meta.get("call_direction") or "") + " call"
    direction = safe_text(kind[:1].upper() + kind[1:], "magenta", one_line=True, limit=30)
    disposition = safe_text(meta.get("disposition", ""), "magenta", one_line=True, limit=40)
    lines: list[RenderableType] = [direction + Text(f" · {duration(meta.get('duration_s'))} · ", style="magenta") + disposition]
    if meta.get("transcript"):
        transcript = safe_text(meta["transcript"], "dim italic")
        lines.append(transcript if expanded else Clamp(transcript, TRANSCRIPT_LINES, "… x shows the full transcript"))
    return lines


def item_head(item: TimelineItem, customer: str, local: datetime) -> Text:
    """Time, channel badge, direction and who wrote it; the delivery state of what we sent."""
    who = safe_text(item.author_name or "Agent", "bold") if item.direction != "inbound" else safe_text(customer, "bold cyan")
    head = Text.assemble(
        (f" {local:%H:%M} ", "dim"), (f"{channel_label(item.channel)} {DIRECTION.get(item.direction, '')} ", ""), who
    )
    status = item.outbox_state or item.delivery_status
    if item.direction == "outbound" and status:
        head.append(f"  {STATUS_ICON.get(status, status)}", style="red" if status == "failed" else "green")
    if item.direction == "note":
        head.append("  internal note", style="italic yellow")
    return head


def item_body(item: TimelineItem, expanded: bool) -> list[RenderableType]:
    """What was said: call facts, delivery failure, email headers, the text (quoted history folded)."""
    body: list[RenderableType] = []
    if item.channel == "phone" and item.direction != "note":
        body.extend(call_lines(item, expanded))
    status = item.outbox_state or item.delivery_status
    if status == "failed" and item.meta.get("delivery_error"):  # the provider's reason; R sends it again
        body.append(Text.assemble(("Not delivered: ", "bold red"), safe_text(str(item.meta["delivery_error"]), "red", limit=300)))
    if item.channel == "email" and item.direction != "note":
        body.extend(email_headers(item))
    elif item.subject:
        body.append(Text.assemble(("Subject: ", "dim"), safe_text(item.subject, "italic", one_line=True, limit=200)))
    text, folded = own_words(item)
    body.append(safe_text(text, "italic yellow" if item.direction == "note" else ""))
    if folded and expanded:
        body.append(safe_text(item.text[len(text) :].strip("\n"), "dim"))
    elif folded:
        body.append(Text("… quoted text hidden · x shows it", style="dim italic"))
    return body


def item_blocks(
    item: TimelineItem, customer: str, local: datetime, expanded: bool = False, *, continued: bool = False
) -> list[RenderableType]:
    """One interaction: a heading line and an indented body; untrusted parts only through safe_text.
    `continued`: a chat message right after one from the same side of the same chat, under its heading."""
    blocks: list[RenderableType] = [] if continued else [item_head(item, customer, local)]
    body = _stacked(item_body(item, expanded))
    blocks.append(Padding(body, (0, 1, 0, INDENT)))
    if item.direction == "note":
        return [LeftBar(blocks, "bold yellow")]
    return blocks


def _stacked(parts: list[RenderableType]) -> RenderableType:
    """Parts one under another (safe_text's Text ends without a newline: in a Group it would run on)."""
    if all(isinstance(part, Text) for part in parts):
        return Text("\n").join(parts)  # type: ignore[arg-type]
    lines = []
    for part in parts:
        if isinstance(part, Text):
            part = part.copy()
            part.end = "\n"
        lines.append(part)
    return Group(*lines)


def conversation_heading(item: TimelineItem) -> Text:
    """Where the timeline passes into another conversation: its channel, subject and status."""
    parts: list[Text] = [Text("┌ conversation", style="cyan"), Text(channel_label(item.channel))]
    if item.conversation_subject:
        parts.append(safe_text(item.conversation_subject, "italic", one_line=True, limit=80))
    if item.conversation_status:
        status = item.conversation_status
        parts.append(safe_text(status, STATUS_STYLE.get(status, ""), one_line=True, limit=20))
    return Text(" · ", style="dim").join(parts)


def day_separator(day: date) -> Text:
    return Text(f"── {day:%a %d %b %Y} ──", style="bold dim", justify="center")


def continues_chat(previous: TimelineItem | None, item: TimelineItem) -> bool:
    """A chat message from the same side (and author) as the one before it in the same chat session."""
    return (
        previous is not None and item.channel == "chat" and previous.channel == "chat"
        and previous.conversation_id == item.conversation_id and previous.direction == item.direction
        and previous.author_name == item.author_name and item.direction != "note"
    )  # fmt: skip


# --- the widget -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One interaction's lines, with the separators above it: a day and/or a conversation boundary."""

    lines: list[list[Segment]]  # as Rich rendered them (kept as plain lists: a Strip is 9 objects for the collector)
    heading: int | None  # where the conversation boundary begins, if there is one
    body: int  # where the interaction's own lines begin


class Timeline(LineView, can_focus=True):
    """The open customer's timeline, newest at the bottom, a window of it at a time."""

    DEFAULT_CSS = """
    Timeline { background: $surface; scrollbar-gutter: stable; }
    Timeline > .timeline--mark { background: $accent 50%; text-style: bold; }
    Timeline > .timeline--highlight { background: $warning 25%; }
    """
    COMPONENT_CLASSES = {"timeline--mark", "timeline--highlight"}

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.source: CustomerTimeline | None = None
        self.customer_name = ""
        self.items: list[TimelineItem] = []  # the loaded window, oldest first
        self.has_older = self.has_newer = False  # the cache holds more before (after) the loaded window
        self.lo = self.hi = 0  # items[lo:hi] are laid out
        self.expanded = False  # quoted email text and full transcripts shown (x)
        self.marked: str | None = None  # the interaction whose conversation boundary `{`/`}` last reached
        self.highlighted: str | None = None  # the interaction `reveal` brought into view, for a moment
        self._bottom = True  # the agent is at the newest line: it stays in view as new interactions arrive
        self._lines: list[list[Segment]] = []
        self._owner: list[int] = []  # per line: the index (in items) of the interaction it belongs to
        self._top: dict[int, int] = {}  # item index -> first line of its block
        self._body: dict[int, int] = {}  # item index -> first line of its own lines
        self._heading_of: dict[int, int] = {}  # item index -> first line of the boundary above it
        self._headings: list[int] = []  # lines where a conversation boundary begins
        self._index: dict[str, int] = {}  # interaction id -> index in items
        self._blocks: dict[str, tuple[tuple, Block]] = {}  # id -> (what it showed, its block)
        self._width = 0
        self._highlight_timer: Timer | None = None
        self._growing = False  # a page is about to be laid out at an edge
        self._painted: dict[tuple, Strip] = {}  # (line, width, style, marked, highlighted) -> the line as painted

    # --- what is loaded -----------------------------------------------------------------------------

    def show(self, customer_name: str, source: CustomerTimeline, *, fresh: bool = False) -> None:
        """Show `source`'s timeline: a new customer (or `fresh`) opens at the newest; the same one reloads
        in place (a live update), staying at the bottom if the agent was there."""
        same = not fresh and self.source is not None and self.source.customer_id == source.customer_id
        self.source, self.customer_name = source, customer_name
        if same:
            self.reload()
            return
        self.expanded, self.marked, self.highlighted = False, None, None
        self._blocks.clear()
        self._open_newest()

    def _open_newest(self) -> None:
        assert self.source is not None
        self._set_items(self.source.newest(WINDOW))
        self.has_older, self.has_newer = len(self.items) == WINDOW, False
        self.lo = self.hi = len(self.items)
        self._bottom = True
        self._lines, self._owner = [], []
        self._fill(pin=True)

    def action_scroll_end(self) -> None:
        """End: to the newest interaction, wherever the agent had gone back to."""
        self.paint_first()
        if self.source is not None and (self.has_newer or self.hi < len(self.items)):
            self._open_newest()
        else:
            self.scroll_now(self.max_scroll_y)

    # Keys scroll at once, not animated: an animation repaints the whole view a dozen times per key and
    # falls behind a held key.
    def action_scroll_up(self) -> None:
        self._scroll_by(-1)

    def action_scroll_down(self) -> None:
        self._scroll_by(1)

    def action_page_up(self) -> None:
        self._scroll_by(-self.scrollable_content_region.height)

    def action_page_down(self) -> None:
        self._scroll_by(self.scrollable_content_region.height)

    def action_scroll_home(self) -> None:
        self._scroll_by(-self.scroll_offset.y)

    def _scroll_by(self, lines: int) -> None:
        if not self.allow_vertical_scroll:
            raise SkipAction()
        self.paint_first()
        self.scroll_now(self.scroll_offset.y + lines)

    def reload(self) -> None:
        """The cache changed: read the loaded range again, with what is new at the newest end."""
        if self.source is None:
            return
        pin, anchor = self._pinned(), self._anchor_at(self.scroll_offset.y)
        laid = (self.items[self.lo].position, self.items[self.hi - 1].position) if self.hi > self.lo else None
        if not self.items:
            items = self.source.newest(WINDOW)
            self.has_older = len(items) == WINDOW
        else:
            last = self.items[-1].position if self.has_newer else None
            items = self.source.between(self.items[0].position, last, MAX_ITEMS)
            if len(items) == MAX_ITEMS:
                self.has_older = True  # the newest MAX_ITEMS from where the window began: older ones dropped
        self._set_items(items)
        positions = [item.position for item in items]
        if laid is None or pin:
            self.hi = len(items)
            self.lo = max(0, bisect_left(positions, laid[0]) if laid else self.hi, self.hi - MAX_LAID)
        else:
            self.lo, self.hi = bisect_left(positions, laid[0]), bisect_right(positions, laid[1])
        self._layout(anchor, pin=pin)
        self._fill(pin=pin)

    def _set_items(self, items: list[TimelineItem]) -> None:
        self.items = items
        self._index = {item.id: index for index, item in enumerate(items)}

    def _pinned(self) -> bool:
        """At the newest line as of the agent's last scroll: the next layout keeps the newest line in view."""
        return self._bottom and not self.has_newer and self.hi == len(self.items)

    def load_older(self) -> bool:
        """Read the window before the loaded one (dropping the newest past MAX_ITEMS, never laid-out ones)."""
        if self.source is None or not self.has_older or not self.items:
            return False
        older = self.source.before(self.items[0].position, WINDOW)
        self.has_older = len(older) == WINDOW
        if not older:
            return False
        items = older + self.items
        self.lo, self.hi = self.lo + len(older), self.hi + len(older)
        keep = max(MAX_ITEMS, self.hi)
        if len(items) > keep:
            items, self.has_newer = items[:keep], True
        self._set_items(items)
        return True

    def load_newer(self) -> bool:
        """Read the window after the loaded one (once the agent has gone back in time)."""
        if self.source is None or not self.has_newer or not self.items:
            return False
        newer = self.source.after(self.items[-1].position, WINDOW)
        self.has_newer = len(newer) == WINDOW
        if not newer:
            return False
        items = self.items + newer
        cut = min(max(0, len(items) - MAX_ITEMS), self.lo)
        if cut:
            items, self.has_older = items[cut:], True
            self.lo, self.hi = self.lo - cut, self.hi - cut
        self._set_items(items)
        return True

    # --- what is laid out ---------------------------------------------------------------------------

    def grow_up(self, lines: int) -> bool:
        """Lay out at least `lines` more lines above (loading the older window when needed); the view stays."""
        anchor, added = self._anchor_at(self.scroll_offset.y), 0  # before a load moves the indexes
        if not self._sized() or self.lo == 0 and not self.load_older():
            return False
        while self.lo > 0 and added < lines:
            self.lo -= 1
            added += len(self._block(self.lo).lines)
        self.hi = min(self.hi, self.lo + MAX_LAID)
        self._layout(anchor)
        return True

    def grow_down(self, lines: int) -> bool:
        """Lay out at least `lines` more lines below (loading the newer window when needed); the view stays."""
        anchor, added = self._anchor_at(self.scroll_offset.y), 0
        if not self._sized() or self.hi == len(self.items) and not self.load_newer():
            return False
        while self.hi < len(self.items) and added < lines:
            added += len(self._block(self.hi).lines)
            self.hi += 1
        self.lo = max(self.lo, self.hi - MAX_LAID)
        self._layout(anchor)
        return True

    def _fill(self, *, pin: bool = False) -> None:
        """Enough laid out to fill the view and a margin above it (at open, after a reload or a resize)."""
        if not self._sized():  # not yet: on_resize fills it
            return
        wanted = self.scrollable_content_region.height + 2 * EDGE
        if len(self._lines) < wanted or not self._lines:
            self._grow_range(wanted - len(self._lines))
        self._layout(self._anchor_at(self.scroll_offset.y), pin=pin)

    def _grow_range(self, lines: int) -> None:
        """Lay out more, above first (the view opens at the bottom), without loading from the cache."""
        added = 0
        while self.lo > 0 and added < lines:
            self.lo -= 1
            added += len(self._block(self.lo).lines)
        while self.hi < len(self.items) and added < lines:
            added += len(self._block(self.hi).lines)
            self.hi += 1

    def _sized(self) -> bool:
        """Whether the widget has its size yet; a new width drops every rendered block (they wrap anew)."""
        width = self.scrollable_content_region.width
        if width < 10 or not self.scrollable_content_region.height:
            return False
        if width != self._width:
            self._width, self._blocks = width, {}
        return True

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._bottom = new_value >= self.max_scroll_y
        self._check_edges()

    def _check_edges(self) -> None:
        """The view is near an end of what is laid out, and there is more: lay out (or load) a page there,
        once this message is handled (never while Textual is in the middle of a scroll)."""
        if self.source is None or not self._lines or self._growing:
            return
        y = self.scroll_offset.y
        if y <= EDGE and (self.lo > 0 or self.has_older) or y >= self.max_scroll_y - EDGE and (self.hi < len(self.items) or self.has_newer):
            self._growing = True
            self.call_later(self._grow_if_near)

    def _grow_if_near(self) -> None:
        self._growing = False
        page = self.scrollable_content_region.height + EDGE
        if self.scroll_offset.y <= EDGE and (self.lo > 0 or self.has_older):
            self.grow_up(page)
        elif self.scroll_offset.y >= self.max_scroll_y - EDGE and (self.hi < len(self.items) or self.has_newer):
            self.grow_down(page)

    def on_resize(self) -> None:
        pin = self._pinned()
        if self.scrollable_content_region.width != self._width:
            self._layout(self._anchor_at(self.scroll_offset.y), pin=pin)
        self._fill(pin=pin)  # a taller view may need more lines

    def _block(self, index: int) -> Block:
        """Item `index`'s block, rendered now unless it shows the same as when it was last rendered."""
        item = self.items[index]
        previous = self.items[index - 1] if index > 0 else None
        day = _day(item)
        new_day = previous is None or _day(previous) != day
        boundary = previous is None or previous.conversation_id != item.conversation_id
        continued = not new_day and not boundary and continues_chat(previous, item)
        shows = (item, new_day, boundary, continued, self._width, self.expanded, self.customer_name)
        cached = self._blocks.get(item.id)
        if cached is not None and cached[0] == shows:
            return cached[1]
        console = self.app.console
        options = console.options.update_width(self._width)

        def render(*renderables: RenderableType) -> list[list[Segment]]:
            return [line for r in renderables for line in console.render_lines(r, options, pad=False)]

        lines = render(day_separator(day)) if new_day else []
        heading = len(lines) if boundary else None
        if boundary:
            lines += render(conversation_heading(item))
        body = len(lines)
        local = _local(item)
        lines += render(*item_blocks(item, self.customer_name, local, self.expanded, continued=continued))
        block = Block(lines, heading, body)
        self._blocks[item.id] = (shows, block)
        return block

    def _layout(self, anchor: Anchor | None, *, pin: bool = False) -> None:
        """Lines for items[lo:hi] (each unchanged block reused), then the viewport put back on `anchor` —
        or on the newest line when `pin`ned to the bottom."""
        if not self._sized():  # not yet: on_resize lays it out at its real width
            self._lines, self._owner = [], []
            return
        width = self._width
        lines: list[list[Segment]] = []
        owner: list[int] = []
        self._top, self._body, self._heading_of, self._headings = {}, {}, {}, []
        for index in range(self.lo, self.hi):
            block = self._block(index)
            start = len(lines)
            self._top[index], self._body[index] = start, start + block.body
            if block.heading is not None:
                self._heading_of[index] = start + block.heading
                self._headings.append(start + block.heading)
            lines += block.lines
            owner += [index] * len(block.lines)
        laid = {self.items[index].id for index in range(self.lo, self.hi)}
        self._blocks = {key: value for key, value in self._blocks.items() if key in laid}  # memory follows the view
        self._lines, self._owner = lines, owner
        self._painted.clear()
        self.set_virtual_size(Size(width, len(lines)))
        if pin:
            self.scroll_now(self.max_scroll_y)
        elif anchor is not None and (line := self._line_of(anchor)) is not None:
            self.scroll_now(line)
        self.refresh()
        self._check_edges()

    def _anchor_at(self, line: int) -> Anchor | None:
        if not self._owner:
            return None
        line = max(0, min(line, len(self._owner) - 1))
        index = self._owner[line]
        return self.items[index].id, line - self._top[index]

    def _line_of(self, anchor: Anchor) -> int | None:
        index = self._index.get(anchor[0])
        return None if index not in self._top else self._top[index] + anchor[1]

    # --- moving around ------------------------------------------------------------------------------

    def jump(self, delta: int) -> bool:
        """To the next (delta > 0) or previous conversation boundary, laying out (and loading) on the way."""
        top, height = self.scroll_offset.y, self.scrollable_content_region.height
        marked = self._heading_of.get(self._index.get(self.marked or "", -1))
        if marked is not None and top <= marked < top + height:
            reference = marked  # from the boundary reached last, while it is in view
        else:
            reference = top if delta > 0 else top + height
        place = self._anchor_at(reference)
        while not (candidates := [h for h in self._headings if (h > reference if delta > 0 else h < reference)]):
            if not (self.grow_up(height) if delta < 0 else self.grow_down(height)):
                return False
            moved = self._line_of(place) if place is not None else None
            reference = reference if moved is None else moved  # the laid-out lines shifted under it
        target = candidates[0] if delta > 0 else candidates[-1]
        self.marked = self.items[self._owner[target]].id
        self.scroll_now(target)
        self.refresh()
        return True

    def toggle_expanded(self) -> None:
        """Show or hide quoted email text and full call transcripts, keeping the viewport in place."""
        self.expanded = not self.expanded
        pin = self._pinned()
        self._layout(self._anchor_at(self.scroll_offset.y), pin=pin)
        self._fill(pin=pin)

    def reveal(self, interaction_id: str) -> bool:
        """Bring an interaction of the open customer into view, highlighted for a moment (for search):
        windows are loaded back to it, or a window around it when it is far from the loaded one."""
        if self.source is None:
            return False
        if interaction_id not in self._index:
            position = self.source.position_of(interaction_id)
            if position is None:
                return False
            self._load_around(position)
        index = self._index.get(interaction_id)
        if index is None or not self._sized():
            return False
        if not self.lo <= index < self.hi:  # lay out a page around it, in place of what was laid out
            self.lo, self.hi = index, index + 1
            self._grow_range(self.scrollable_content_region.height)
            self._layout(None)
        top, height = self.scroll_offset.y, self.scrollable_content_region.height
        start = self._body[index]
        end = self._top[index + 1] if index + 1 in self._top else len(self._lines)
        if start < top or end > top + height:
            self.scroll_now(max(0, start - height // 3))
        self.highlighted = interaction_id
        if self._highlight_timer is not None:
            self._highlight_timer.stop()
        self._highlight_timer = self.set_timer(HIGHLIGHT_SECONDS, self._end_highlight)
        self.refresh()
        return True

    def _end_highlight(self) -> None:
        self.highlighted = None
        self.refresh()

    def _load_around(self, position: Position) -> None:
        """Load the window holding `position`: back to it from the loaded one while that stays within
        MAX_ITEMS, else a window centred on it (the way back to the newest loads as the agent scrolls)."""
        assert self.source is not None
        if self.items and position < self.items[0].position:
            wanted = self.source.count_between(position, self.items[0].position, MAX_ITEMS) + EDGE
            if wanted + len(self.items) <= MAX_ITEMS:
                older = self.source.before(self.items[0].position, wanted)
                self.has_older = len(older) == wanted
                self.lo, self.hi = self.lo + len(older), self.hi + len(older)
                self._set_items(older + self.items)
                return
        half = WINDOW // 2
        older = self.source.before(position, half)
        rest = self.source.between(position, position, 1) + self.source.after(position, half)
        self._set_items(older + rest)
        self.has_older, self.has_newer = len(older) == half, len(rest) == half + 1
        self.lo = self.hi = len(older)

    # --- painting -----------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        """The CSS or the theme changed: lines painted with the old mark and highlight styles go (the cache's
        key holds the widget's style, not those)."""
        super().notify_style_update()
        self._painted.clear()

    def render_line(self, y: int) -> Strip:
        """A laid-out line in the widget's style (a scroll repaints every line: each is styled once)."""
        index = y + self.scroll_offset.y
        width = self.scrollable_content_region.width
        style = self.line_style
        if not 0 <= index < len(self._lines):
            return Strip.blank(width, style)
        key = (index, width, style, self.marked, self.highlighted)
        if (strip := self._painted.get(key)) is None:
            if len(self._painted) >= PAINTED_KEPT:
                self._painted.clear()
            strip = self._painted[key] = self._paint(index, width, style)
        return strip

    def _paint(self, index: int, width: int, style: Style) -> Strip:
        owner = self._owner[index]
        item_id = self.items[owner].id
        if item_id == self.marked and self._heading_of.get(owner, len(self._lines)) <= index < self._body[owner]:
            style = style + self.get_component_rich_style("timeline--mark")
        elif item_id == self.highlighted and index >= self._body[owner]:
            style = style + self.get_component_rich_style("timeline--highlight")
        line = self._lines[index]
        return fitted([Segment(s.text, style + s.style if s.style else style) for s in line], width, style)


def _local(item: TimelineItem) -> datetime:
    return (from_iso(item.occurred_at) or EPOCH).astimezone()


def _day(item: TimelineItem) -> date:
    return _local(item).date()
