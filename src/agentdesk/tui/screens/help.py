"""The help screen: every key binding with what it does, built from the keymap as it is bound now."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 150; max-width: 95%; height: auto; max-height: 90%; border: thick $accent; background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """rows: (keys as shown, title, what it does, binding id)."""
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_edge=False, header_style="bold")
        for name in ("key", "action", "does", "binding id"):  # one line per binding, so the whole list fits
            table.add_column(name, no_wrap=True, overflow="ellipsis", ratio=3 if name == "does" else None)
        for keys, title, does, binding_id in self.rows:
            table.add_row(Text(keys, "bold cyan"), Text(title), Text(does), Text(binding_id, "dim"))
        with VerticalScroll():
            yield Static(Text("Keys — rebind any of them by id in the [keymap] table of the config file", "bold"))
            yield Static(table)
