"""One small modal for every conversation action that needs a choice: pick from a list, type a value, or both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static


class PickModal(ModalScreen[Any]):
    """Dismisses with the chosen value, the parsed text, or None (escape).

    Choices are (label, value) with labels as `Text` (agent and team names arrive sanitised, never as
    markup); `parse` turns typed text into a value or raises ValueError, whose message is shown in place.
    """

    DEFAULT_CSS = """
    PickModal { align: center middle; }
    PickModal > Vertical { width: 70; height: auto; max-height: 90%; border: thick $accent; background: $surface; padding: 0 1; }
    PickModal #pick-heading { padding: 0 0 1 0; }
    PickModal OptionList { height: auto; max-height: 18; }
    PickModal #pick-error { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "dismiss", "Cancel")]

    def __init__(
        self,
        heading: str,
        choices: Sequence[tuple[Text, Any]] = (),
        *,
        parse: Callable[[str], Any] | None = None,
        placeholder: str = "",
        highlighted: int | None = None,
    ) -> None:
        super().__init__()
        self.heading = heading
        self.choices = list(choices)
        self.parse = parse
        self.placeholder = placeholder
        self.highlighted = highlighted

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.heading, style="bold"), id="pick-heading")
            if self.choices:
                yield OptionList(*(label for label, _ in self.choices), id="pick-choices")
            if self.parse is not None:
                yield Input(placeholder=self.placeholder, id="pick-input")
            yield Static(id="pick-error")

    def on_mount(self) -> None:
        if self.choices:
            options = self.query_one(OptionList)
            options.highlighted = self.highlighted or 0
            options.focus()
        else:
            self.query_one(Input).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.choices[event.option_index][1])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        assert self.parse is not None
        try:
            value = self.parse(event.value)
        except ValueError as exc:
            self.query_one("#pick-error", Static).update(Text(str(exc)))
            return
        self.dismiss(value)
