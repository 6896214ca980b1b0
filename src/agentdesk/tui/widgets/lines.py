"""The base of the desk's line-painted views (queue, timeline)."""

from __future__ import annotations

from rich.style import Style
from textual.geometry import Region
from textual.scroll_view import ScrollView
from textual.strip import Strip


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

    @property
    def line_style(self) -> Style:
        """The widget's style, for a line being painted."""
        return self.rich_style if self._paint_style is None else self._paint_style
