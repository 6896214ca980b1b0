"""A yes-or-no question before something that cannot be taken back (e.g. sending over a colleague's reply)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class ConfirmModal(ModalScreen[bool]):
    """Dismisses with True on enter, False on escape. The question arrives as `Text` (it may quote names
    from outside, sanitised by the caller), never as markup."""

    DEFAULT_CSS = """
    ConfirmModal { align: center middle; }
    ConfirmModal > Vertical { width: 70; height: auto; max-height: 90%; border: thick $warning; background: $surface; padding: 0 1; }
    ConfirmModal #confirm-question { padding: 0 0 1 0; }
    ConfirmModal #confirm-keys { color: $text-muted; }
    """
    BINDINGS = [Binding("enter", "answer(True)", "Yes", priority=True), Binding("escape", "answer(False)", "No")]

    def __init__(self, question: Text, yes: str = "yes", no: str = "no") -> None:
        super().__init__()
        self.question = question
        self.keys = Text.assemble(("enter", "bold"), f" {yes}  ·  ", ("escape", "bold"), f" {no}")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, id="confirm-question")
            yield Static(self.keys, id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
