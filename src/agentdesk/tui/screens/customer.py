"""The customer card (`c`): who the customer is, and the edits an agent makes to them — tags, notes, merges.

Everything on it came from outside, so it reaches widgets only through safe_text/clean. Every edit goes
through the outbox (store/customers.py): shown at once, sent on the next sync, rolled back with the server's
reason if refused. The card reads afresh whenever another connection (the sync engine) changes the cache.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Footer, Input, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from agentdesk.domain.clock import from_iso
from agentdesk.domain.text import clean, clean_line, safe_text
from agentdesk.store import customers
from agentdesk.store.customers import CustomerCard, CustomerMatch, Suggestion
from agentdesk.tui.choices import parse_tag
from agentdesk.tui.render import CHANNEL_ICON, CHANNEL_NAME, span
from agentdesk.tui.screens.pick import PickModal

if TYPE_CHECKING:
    from agentdesk.tui.app import AgentDesk

FIND_OTHER = "find"  # the option after the suggestions: merge with a customer found by search
CHANGES_POLL = 0.3  # seconds between checks whether the sync engine changed the cache
SEARCH_DEBOUNCE = 0.15  # seconds of quiet in the merge search before it runs


def fact_rows(card: CustomerCard, now: Any) -> Table:
    """The card's facts as a two-column grid; every value that came from outside through safe_text."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    identities = Text("\n").join(
        Text.assemble(f"{CHANNEL_ICON.get(kind, '•')} {CHANNEL_NAME.get(kind, clean_line(kind, 12))}  ", safe_text(address, one_line=True, limit=60))
        for kind, address in card.identities
    ) or Text("none", style="dim")
    if card.identity_count > len(card.identities):
        identities.append(f"\n… and {card.identity_count - len(card.identities)} more", style="dim")
    grid.add_row("Identities", identities)
    tags = safe_text(" ".join(f"#{tag}" for tag in card.tags), "magenta", one_line=True, limit=200) if card.tags else Text("none", style="dim")
    grid.add_row("Tags", tags)
    grid.add_row("Language", safe_text(card.language or "—", one_line=True, limit=20))
    grid.add_row("Conversations", Text(f"{card.open_conversations:,} open · {card.conversations:,} total"))
    grid.add_row("Last CSAT", Text(f"{card.last_csat}/5", style="bold") if card.last_csat else Text("—"))
    contact = from_iso(card.last_contact)
    grid.add_row("Last contact", Text(f"{span((now - contact).total_seconds())} ago · {contact.astimezone():%a %d %b %Y %H:%M}") if contact else Text("—"))
    return grid


def suggestion_label(suggestion: Suggestion) -> Text:
    return Text.assemble(
        safe_text(suggestion.other_name, "bold", one_line=True, limit=40), ("  ", ""),
        safe_text(suggestion.reason, "dim", one_line=True, limit=80),
    )


def match_label(match: CustomerMatch) -> Text:
    label = safe_text(match.name, "bold", one_line=True, limit=40)
    if match.address:
        label.append_text(Text.assemble(("  ", ""), safe_text(match.address, "dim", one_line=True, limit=50)))
    return label


class CustomerSearchModal(ModalScreen["CustomerMatch | None"]):
    """Find a customer in the cache by name, email or phone (a LIMITed search per keystroke)."""

    DEFAULT_CSS = """
    CustomerSearchModal { align: center middle; }
    CustomerSearchModal > Vertical { width: 80; max-width: 95%; height: auto; max-height: 90%; border: thick $accent; background: $surface; padding: 0 1; }
    CustomerSearchModal OptionList { height: auto; max-height: 12; }
    """
    BINDINGS = [Binding("escape", "dismiss", "Cancel"), Binding("down", "move(1)", show=False), Binding("up", "move(-1)", show=False)]

    def __init__(self, search: Callable[[str], list[CustomerMatch]], heading: str) -> None:
        super().__init__()
        self.search = search
        self.heading = heading
        self.matches: list[CustomerMatch] = []
        self.pending: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.heading, style="bold"))
            yield Input(placeholder="name, email or phone", id="customer-search")
            yield OptionList(id="customer-matches")

    def on_input_changed(self, event: Input.Changed) -> None:
        """Search once typing pauses: a search that finds little scans the customers, so not per keystroke."""
        event.stop()
        if self.pending is not None:
            self.pending.stop()
        self.pending = self.set_timer(SEARCH_DEBOUNCE, lambda: self.show_matches(event.value))

    def show_matches(self, text: str) -> None:
        self.matches = self.search(text)
        options = self.query_one(OptionList)
        options.set_options(match_label(m) for m in self.matches)
        if self.matches:
            options.highlighted = 0

    def action_move(self, delta: int) -> None:
        options = self.query_one(OptionList)
        if self.matches:
            options.highlighted = max(0, min(len(self.matches) - 1, (options.highlighted or 0) + delta))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        index = self.query_one(OptionList).highlighted
        if self.matches and index is not None:
            self.dismiss(self.matches[index])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.matches[event.option_index])


class CustomerScreen(ModalScreen[None]):
    """The card of one customer; escape goes back to the desk."""

    DEFAULT_CSS = """
    CustomerScreen { align: center middle; }
    CustomerScreen > #card { width: 110; max-width: 100%; height: auto; max-height: 100%; border: thick $accent; background: $surface; padding: 0 1; }
    CustomerScreen #card-title { height: auto; }
    CustomerScreen #card-facts { height: auto; max-height: 14; }
    CustomerScreen .card-heading { height: 1; text-style: bold; color: $text-muted; }
    CustomerScreen #suggestions { height: auto; max-height: 8; }
    CustomerScreen #notes { height: 7; }
    """
    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("t", "tag", "Tag"),
        Binding("n", "focus_notes", "Notes"),
        Binding("ctrl+s", "save_notes", "Save notes", priority=True),
        Binding("m", "merge", "Merge"),
        Binding("x", "dismiss_suggestion", "Dismiss"),
        Binding("u", "undo_merge", "Undo merge"),
    ]

    def __init__(self, customer_id: str) -> None:
        super().__init__()
        self.customer_id = customer_id
        self.card: CustomerCard | None = None
        self.suggestions: list[Suggestion] = []
        self.notes_loaded = ""  # the notes as last loaded into the editor: unchanged means nothing to save
        self.data_version: int | None = None
        self.warned_unsaved = False  # escape with unsaved notes warns once; a second escape leaves

    @property
    def desk(self) -> AgentDesk:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="card", can_focus=False):  # scrolls (by wheel) in a small terminal
            yield Static(id="card-title")
            yield Static(id="card-facts")
            yield Static(Text("Merge suggestions  (m merges into this customer · x dismisses)"), classes="card-heading")
            yield OptionList(id="suggestions")
            yield Static(Text("Notes  (n edits · ctrl+s saves)"), classes="card-heading")
            yield TextArea(id="notes", soft_wrap=True, show_line_numbers=False)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_card()
        self.query_one("#suggestions", OptionList).focus()
        self.set_interval(CHANGES_POLL, self.refresh_if_changed)

    # --- data into widgets --------------------------------------------------------------------------

    def refresh_if_changed(self) -> None:
        """PRAGMA data_version moves when another connection (the sync engine) commits: read afresh then."""
        version = self.desk.cache.db.execute("PRAGMA data_version").fetchone()[0]
        if version != self.data_version:
            self.refresh_card()

    def refresh_card(self) -> None:
        cache = self.desk.cache
        self.data_version = cache.db.execute("PRAGMA data_version").fetchone()[0]
        card = self.card = customers.card(cache, self.customer_id)
        self.query_one("#card-title", Static).update(self.title_text(card))
        self.query_one("#card-facts", Static).update(fact_rows(card, self.desk.clock()) if card else Text(""))
        self.show_suggestions(customers.suggestions(cache, self.customer_id) if card else [])
        notes = self.query_one("#notes", TextArea)
        fresh = clean(card.notes) if card else ""
        if notes.text == self.notes_loaded and fresh != self.notes_loaded:  # never over the agent's own edit
            notes.load_text(fresh)
            self.notes_loaded = fresh
        self.refresh_bindings()

    def title_text(self, card: CustomerCard | None) -> Text:
        if card is None:
            return Text("This customer is no longer in the cache (merged away, or out of your teams' view).", style="yellow")
        title = Text.assemble(("Customer  ", "dim"), safe_text(card.display_name or "Unknown customer", "bold", one_line=True, limit=80))
        if card.merged_into:
            title.append_text(Text.assemble(("\nMerged into ", "yellow"), safe_text(card.merged_into_name or "another customer", "bold yellow", one_line=True, limit=60)))
        if (merge := customers.last_merge(self.desk.cache, card.id)) is not None:
            title.append_text(Text.assemble(("\nMerged ", "green"), safe_text(merge["source_name"], "bold", one_line=True, limit=60), (" into this customer · u undoes", "green")))
        return title

    def show_suggestions(self, suggestions: list[Suggestion]) -> None:
        options = self.query_one("#suggestions", OptionList)
        if [(s.id, s.other_name, s.reason) for s in suggestions] == [(s.id, s.other_name, s.reason) for s in self.suggestions] and options.option_count:
            return  # unchanged: no repaint, the highlight stays
        highlighted = self.highlighted_suggestion()
        self.suggestions = suggestions
        options.set_options([
            *(Option(suggestion_label(s), id=s.id) for s in suggestions),
            Option(Text("Find another customer to merge into this one…", style="italic"), id=FIND_OTHER),
        ])
        ids = [s.id for s in suggestions]
        options.highlighted = ids.index(highlighted.id) if highlighted and highlighted.id in ids else 0

    def highlighted_suggestion(self) -> Suggestion | None:
        index = self.query_one("#suggestions", OptionList).highlighted
        return self.suggestions[index] if index is not None and index < len(self.suggestions) else None

    # --- actions --------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("tag", "merge", "focus_notes", "save_notes") and self.card is None:
            return False
        if action == "dismiss_suggestion":
            return self.highlighted_suggestion() is not None
        if action == "undo_merge":
            return self.card is not None and customers.last_merge(self.desk.cache, self.card.id) is not None
        return True

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.refresh_bindings()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_merge()

    def run_change(self, change: Callable[[], object], done: str | None = None) -> bool:
        """Queue one edit: the card and the desk show it now, the sync engine carries it to the server."""
        try:
            change()
        except (sqlite3.Error, OSError, LookupError, ValueError) as exc:
            self.notify(f"Could not save the change: {exc}", severity="error", timeout=15, markup=False)
            return False
        self.refresh_card()
        self.desk.after_local_change()
        if done:
            self.notify(done, timeout=4, markup=False)
        return True

    def action_close(self) -> None:
        notes = self.query_one("#notes", TextArea)
        if notes.text != self.notes_loaded and not self.warned_unsaved:
            self.warned_unsaved = True
            self.notify("The notes are not saved: ctrl+s saves them, escape again leaves without saving.", severity="warning", markup=False)
            return
        self.dismiss(None)

    def action_focus_notes(self) -> None:
        self.query_one("#notes", TextArea).focus()

    def action_tag(self) -> None:
        assert self.card is not None
        now = " ".join(f"#{tag}" for tag in self.card.tags)
        heading = "Customer tag (-tag removes it)" + (f" · now {clean_line(now, 50)}" if now else "")
        self.app.push_screen(PickModal(heading, parse=parse_tag, placeholder="vip, refund, -vip"), self.retag)

    def retag(self, edit: tuple[str, str] | None) -> None:
        if edit is not None and self.card is not None:
            kind, name = edit
            self.run_change(lambda: customers.queue_retag(self.desk.cache, self.customer_id, kind, name, self.card.tags))

    def action_save_notes(self) -> None:
        text = self.query_one("#notes", TextArea).text
        if text == self.notes_loaded:
            self.notify("The notes have not changed.", timeout=3, markup=False)
            return
        if self.run_change(lambda: customers.queue_notes(self.desk.cache, self.customer_id, text), "Notes saved."):
            self.notes_loaded = text
            self.warned_unsaved = False

    def action_merge(self) -> None:
        if self.card is None:
            return
        suggestion = self.highlighted_suggestion()
        if suggestion is not None:
            self.confirm_merge(suggestion.other_id, suggestion.other_name)
            return
        search = lambda text: customers.search(self.desk.cache, text, self.customer_id)  # noqa: E731
        heading = f"Merge which customer into {clean_line(self.card.display_name, 40)}?"
        self.app.push_screen(CustomerSearchModal(search, heading), lambda m: m and self.confirm_merge(m.id, m.name))

    def confirm_merge(self, other_id: str, other_name: str) -> None:
        assert self.card is not None
        other, this = clean_line(other_name, 40), clean_line(self.card.display_name, 40)
        heading = f"Merge {other} into {this}? {other}'s conversations and identities move to {this}; u on the card undoes it."
        choices = [(Text(f"Merge {other} into {this}"), True), (Text("Cancel"), False)]
        self.app.push_screen(PickModal(heading, choices), lambda yes: yes and self.merge(other_id, other_name))

    def merge(self, other_id: str, other_name: str) -> None:
        done = f"Merging {clean_line(other_name, 40)} into this customer · u undoes it."
        self.run_change(lambda: customers.queue_merge(self.desk.cache, other_id, self.customer_id, other_name), done)

    def action_dismiss_suggestion(self) -> None:
        suggestion = self.highlighted_suggestion()
        if suggestion is not None:
            done = f"Suggestion to merge {clean_line(suggestion.other_name, 40)} dismissed."
            self.run_change(lambda: customers.queue_dismiss(self.desk.cache, suggestion.id), done)

    def action_undo_merge(self) -> None:
        self.run_change(lambda: customers.queue_unmerge(self.desk.cache, self.customer_id), "Undoing the merge.")
