"""The base of the desk's line-painted views (queue, timeline)."""

from __future__ import annotations

import gc

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget


def fitted(segments: list[Segment], width: int, style: Style) -> Strip:
    """A painted line as a Strip exactly `width` cells wide. (Strip.crop_extend of a strip that already fits
    caches the strip in itself: a reference cycle per line, left for Python's slow full collections.)"""
    strip = Strip(segments)
    return strip if strip.cell_length == width else strip.crop_extend(0, width, style)


class LineView(ScrollView):
    """A ScrollView painted line by line (`render_line`) whose own style is read once per paint: `rich_style`
    walks every ancestor's styles, and a scroll repaints every line."""

    _paint_style: Style | None = None  # the widget's style while a paint is under way

    def render_lines(self, crop: Region) -> list[Strip]:
        self._paint_style = self.rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._paint_style = None

    def set_virtual_size(self, size: Size) -> None:
        """Set the scrollable size, repainting this view and its scrollbar only. Textual's virtual_size asks for a
        layout of the whole screen, and that layout refreshed every scrollbar a frame later (~40 ms at 160x45,
        on every conversation opened and every page laid out while scrolling); a layout is needed only when a
        scrollbar appears or goes, and _refresh_scrollbars asks for it then."""
        if size != self.virtual_size:
            self.set_reactive(Widget.virtual_size, size)
            self._scroll_update(size)
            self.refresh()

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True) -> bool:
        """Textual's ScrollView refreshes its scrollbar on every layout of the screen (it compares the container
        size it is given with its own, which differ by the scrollbar gutter): a frame of its own right after the
        layout's. Here only when this view's own size changed; its scrollable size is kept by set_virtual_size."""
        if size == self._size and self._container_size == size - self.styles.gutter.totals:
            return False
        return super()._size_updated(size, virtual_size, container_size, layout)

    def on_unmount(self) -> None:
        gc.enable()  # a paint_first whose frame never came (the app quit first) must not leave it off for good

    def paint_first(self) -> None:
        """Hold Python's cyclic garbage collector until the next frame is on screen: a full collection (20-40 ms
        here; Textual's strips hold reference cycles, so one falls due every few keys) that comes due while a
        key is handled then runs right after the key's repaint instead of before it."""
        if gc.isenabled():
            gc.disable()
            if not self.call_after_refresh(gc.enable):  # closing: nothing will be painted
                gc.enable()
            else:
                self.set_timer(0.5, gc.enable)  # should that callback be dropped (its screen popped first)

    def scroll_now(self, y: float) -> None:
        """Scroll to line `y` before the next frame. (Textual's scroll_to waits for a refresh first: a key's
        repaint took two frames, the first one at the old offset, and a layout jumped before its anchor held.)"""
        self.scroll_to(y=y, animate=False, force=True, immediate=True)

    @property
    def line_style(self) -> Style:
        """The widget's style, for a line being painted."""
        return self.rich_style if self._paint_style is None else self._paint_style
