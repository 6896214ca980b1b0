"""The composer: reply or internal note, on any of the customer's channels, with what each channel needs.

- SMS and WhatsApp: a live "42 chars · GSM-7 · 1 segment" line (domain/sms.py).
- Email: To (shown), Subject (prefilled "Re: …"), Cc, and the answered message quoted on request.
- Internal note: a distinct border and label; it is sent as a `note`, to nobody.
- Canned responses: `::name` then tab or space, or the picker; rendered by domain/canned.py.

The app owns the cache: it hands the composer a `ReplyContext` and draft in `load`, reads `outgoing()` to
send, and stores `text` under `draft_key` (the channel, or "note"). The composer never writes the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Select, Static, TextArea
from textual.widgets._select import SelectCurrent, SelectOverlay

from agentdesk.domain import canned as canned_text
from agentdesk.domain.clock import from_iso
from agentdesk.domain.sms import count as sms_count
from agentdesk.domain.text import clean, clean_line, reply_subject, safe_text
from agentdesk.store.cache import NOTE_DRAFT
from agentdesk.tui.layout import show_line
from agentdesk.tui.render import channel_label

COUNTED_CHANNELS = ("sms", "whatsapp")
MAX_CC = 10  # as many as the server's reply mutation takes


MAX_SUBJECT = 1000  # the server's limit on a reply's subject (server/mutations.py)


@dataclass(frozen=True)
class Answered:
    """The customer's latest email in the conversation: what a reply's subject and quote come from."""

    text: str
    subject: str | None
    occurred_at: str | None


@dataclass(frozen=True)
class ReplyContext:
    """What the composer knows about the conversation being answered (values as the cache has them)."""

    conversation_id: str
    channel: str  # the conversation's own channel
    subject: str | None
    customer_name: str
    first_name: str = ""
    email: str | None = None
    phone: str | None = None
    agent_name: str = ""
    answered: Answered | None = None

    def variables(self, channel: str) -> dict[str, dict[str, str]]:
        return canned_text.variables(
            customer_name=self.customer_name, first_name=self.first_name, email=self.email, phone=self.phone,
            subject=self.subject, channel=channel, conversation_id=self.conversation_id, agent_name=self.agent_name,
        )


@dataclass(frozen=True)
class Outgoing:
    text: str
    channel: str
    note: bool
    subject: str | None = None
    cc: list[str] = field(default_factory=list)


def parse_cc(text: str) -> list[str]:
    """The Cc field's addresses (commas, semicolons or spaces between), normalised; ValueError says which is wrong."""
    # phonenumbers comes with the identity module: kept off the startup path
    from agentdesk.domain.identity import normalize_email

    addresses = [part for part in text.replace(";", ",").replace(" ", ",").split(",") if part.strip()]
    found = list(dict.fromkeys(normalize_email(address) for address in addresses))
    if not all(address.isascii() for address in found):
        raise ValueError("Cc addresses must be plain ASCII (the mail relay cannot send to others).")
    if len(found) > MAX_CC:
        raise ValueError(f"At most {MAX_CC} Cc addresses.")
    return found


def quote_block(answered: Answered, name: str) -> str:
    """ "On <date>, <name> wrote:" and the message, each line after "> " (text from outside, cleaned)."""
    when = from_iso(answered.occurred_at)
    stamp = f"{when.astimezone():%a, %d %b %Y at %H:%M}" if when else "an earlier date"
    lines = clean(answered.text).rstrip("\n").splitlines() or [""]
    quoted = "\n".join(f"> {line}".rstrip() for line in lines)
    return f"\n\nOn {stamp}, {clean(name) or 'the customer'} wrote:\n{quoted}"


class ReplyArea(TextArea):
    """The reply text; tab or space right after `::name` inserts that canned response."""

    async def _on_key(self, event: events.Key) -> None:
        if event.key in ("tab", "space") and self.selection.is_empty:
            row, column = self.cursor_location
            token = canned_text.token_before(self.document[row][:column])
            composer = next((n for n in self.ancestors if isinstance(n, Composer)), None)
            if token is not None and composer is not None and composer.complete_canned(token, event.key == "tab"):
                event.stop()
                event.prevent_default()
                return
        await super()._on_key(event)


class FieldInput(Input):
    """An Input of fixed size (the email fields) that takes a new value with a repaint: Textual's sets its
    scrollable width to the text's with a relayout of the whole screen (~5 ms at 160x45), and the prefilled Subject
    changes on nearly every conversation opened."""

    def _watch_value(self, value: str) -> None:
        self.set_reactive(Widget.virtual_size, Size(self.content_width, 1))  # so Input's own assignment is a no-op
        super()._watch_value(value)
        self.scroll_x = min(self.scroll_x, self.max_scroll_x)  # a shorter value: the clamp the relayout did


class ChannelCurrent(SelectCurrent):
    """The select's current channel, one line in a fixed width: a new label is a repaint, not a relayout."""

    def update(self, label: Any) -> None:
        self.label = label
        self.has_value = label is not Select.NULL
        shown = self.placeholder if label is Select.NULL else label
        self.query_one("#label", Static).update(shown, layout=False)


class ChannelSelect(Select[str]):
    """The reply's channel. Each conversation opened offers its customer's channels (`offer`): Textual's
    set_options goes through "no selection" (a restyle there and back) and rebuilds the hidden drop-down (a
    relayout of the screen); here the choice changes in place and the drop-down is built when it opens."""

    _dropdown_stale = False

    def compose(self) -> ComposeResult:
        yield ChannelCurrent(self.prompt)
        yield SelectOverlay(type_to_search=self._type_to_search).data_bind(compact=Select.compact)

    def offer(self, options: list[tuple[Text, str]], value: str | None) -> None:
        """Offer `options`, with `value` chosen (None: no choice, when there are no options)."""
        if options != self._options[1:]:  # (the first is the blank choice)
            self._setup_variables_for_options(options)
            if self.expanded:  # on screen: what it lists must be what a pick is looked up in
                self._setup_options_renderables()
            else:
                self._dropdown_stale = True
        chosen = self.NULL if value is None else value
        if self.value != chosen:
            self.value = chosen

    def _watch_expanded(self, expanded: bool) -> None:
        if expanded and self._dropdown_stale:
            self._dropdown_stale = False
            self._setup_options_renderables()
        super()._watch_expanded(expanded)


class Composer(Vertical):
    DEFAULT_CSS = """
    Composer { height: auto; max-height: 16; border-top: tall $panel-lighten-1; }
    Composer.-note { border-top: tall $warning; background: $warning 8%; }
    Composer #composer-bar { height: 3; }
    Composer #channel { width: 22; }
    Composer #composer-mode { width: auto; padding: 1 1 0 1; text-style: bold; }
    Composer.-note #composer-mode { color: $warning; }
    Composer #composer-hint { width: 1fr; padding: 1 1 0 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    Composer #email-fields { height: auto; display: none; }
    Composer #email-fields Horizontal { height: 1; }
    Composer .field-label { width: 9; padding: 0 1; color: $text-muted; }
    Composer #email-to { width: 1fr; padding: 0 1; }
    Composer #email-fields Input { height: 1; border: none; padding: 0 1; width: 1fr; }
    Composer #reply { height: 6; }
    Screen.-short Composer #composer-mode { padding: 0 1; }
    """

    class DraftMoved(Message):
        """The draft's key changed (another channel, or note mode): the app moves the stored draft."""

        def __init__(self, old_key: str, new_key: str) -> None:
            super().__init__()
            self.old_key, self.new_key = old_key, new_key

    def __init__(self, canned: Sequence[Any] = (), *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.canned = list(canned)
        self.context: ReplyContext | None = None
        self.note_mode = False
        self._draft_key = ""
        self._quote: str | None = None  # the quote block this composer appended, while it is in the text
        self._channels: list[str] | None = None  # what the widgets show now, so load() changes only what differs
        self._channel_options: list[tuple[Text, str]] = []  # the select's options for _channels
        self._email_fields: dict[str, tuple[str, str]] = {}  # conversation id -> (subject, cc) the agent edited

    def compose(self) -> ComposeResult:
        with Horizontal(id="composer-bar"):
            yield ChannelSelect([], id="channel", allow_blank=True, prompt="Channel")
            yield Static(id="composer-mode")
            yield Static(id="composer-hint")
        with Vertical(id="email-fields"):
            with Horizontal():
                yield Static("To", classes="field-label")
                yield Static(id="email-to")
            with Horizontal():
                yield Static("Subject", classes="field-label")
                yield FieldInput(id="subject", placeholder="Subject")
            with Horizontal():
                yield Static("Cc", classes="field-label")
                yield FieldInput(id="cc", placeholder="more addresses, separated by commas")
        yield ReplyArea(id="reply", soft_wrap=True, show_line_numbers=False)

    def on_mount(self) -> None:
        self.refresh_mode()

    # --- what the app reads and sets --------------------------------------------------------------

    @property
    def reply(self) -> TextArea:
        return self.query_one("#reply", TextArea)

    @property
    def text(self) -> str:
        return self.reply.text

    @property
    def channel(self) -> str:
        value = self.query_one("#channel", Select).value
        return value if isinstance(value, str) else (self.context.channel if self.context else "email")

    @property
    def mode(self) -> str:
        return "note" if self.note_mode else "reply"

    @property
    def draft_key(self) -> str:
        return NOTE_DRAFT if self.note_mode else self.channel

    @property
    def is_email(self) -> bool:
        return self.channel == "email" and not self.note_mode

    def load(self, context: ReplyContext, channels: list[str], draft: tuple[str, str] | None) -> None:
        """Show the conversation's composer: its channels, and its draft (a note draft opens note mode).

        Runs on every move through the queue, so it only touches what differs: each widget update asks
        Textual for a restyle or a relayout of the screen."""
        self._keep_email_fields()
        self.context = context
        key, text = draft or (context.channel, "")
        self.note_mode = key == NOTE_DRAFT
        if channels != self._channels:
            self._channels = list(channels)
            self._channel_options = [(Text(channel_label(c)), c) for c in channels]  # Text: never markup
        wanted = key if key in channels else (context.channel if context.channel in channels else None)
        self.query_one(ChannelSelect).offer(self._channel_options, wanted or (channels[0] if channels else None))
        self._draft_key = self.draft_key
        self._quote = None
        if self.reply.text != text:
            self.reply.load_text(text)
        subject, cc = self._email_fields.get(context.conversation_id, (self._prefilled_subject(), ""))
        self.query_one("#subject", Input).value = subject
        self.query_one("#cc", Input).value = cc
        to = safe_text(context.email, one_line=True) if context.email else Text("no email address on file", style="red")
        show_line(self.query_one("#email-to", Static), to)
        self.refresh_mode()

    def outgoing(self) -> Outgoing:
        """What to send now; ValueError says what is missing or wrong (the text stays)."""
        text = self.text.strip()
        if self.context is None or not text:
            raise ValueError("Nothing to send: pick a conversation and write a reply first.")
        if not self.is_email:
            return Outgoing(text, self.channel, self.note_mode)
        if not self.context.email:
            raise ValueError("This customer has no email address on file: answer on another channel.")
        subject = " ".join(self.query_one("#subject", Input).value.split()) or None
        if subject and len(subject) > MAX_SUBJECT:  # the server would refuse it, after the text had left the composer
            raise ValueError(f"The subject is {len(subject):,} characters long; the most is {MAX_SUBJECT:,}.")
        return Outgoing(text, self.channel, False, subject=subject, cc=parse_cc(self.query_one("#cc", Input).value))

    def clear(self) -> None:
        """After a send: an empty text and Cc, the subject as it was prefilled; the mode stays."""
        self.reply.clear()
        self._quote = None
        self.query_one("#cc", Input).value = ""
        self.query_one("#subject", Input).value = self._prefilled_subject()
        if self.context is not None:
            self._email_fields.pop(self.context.conversation_id, None)
        self.refresh_counter()

    def _keep_email_fields(self) -> None:
        """An edited Subject or a Cc stays with its conversation while the agent looks at others (the text is in
        the draft; these two live for the session)."""
        if self.context is None:
            return
        fields = (self.query_one("#subject", Input).value, self.query_one("#cc", Input).value)
        if fields != (self._prefilled_subject(), ""):
            self._email_fields[self.context.conversation_id] = fields
        else:
            self._email_fields.pop(self.context.conversation_id, None)

    # --- modes ----------------------------------------------------------------------------------

    def toggle_note(self) -> None:
        self.note_mode = not self.note_mode
        self.refresh_mode()
        self._key_changed()

    def toggle_quote(self) -> None:
        """Email: append the answered message, quoted; again: take that quote out."""
        answered = self.context.answered if self.context else None
        if not self.is_email or answered is None:
            self.notify("Nothing to quote: this conversation has no email from the customer.", severity="warning", markup=False)
            return
        text = self.text
        if self._quote and self._quote in text:
            at = text.rfind(self._quote)
            self.reply.load_text(text[:at] + text[at + len(self._quote):])
            self._quote = None
            return
        self._quote = quote_block(answered, self.context.customer_name)
        cursor = self.reply.cursor_location
        self.reply.insert(self._quote, self.reply.document.end)
        self.reply.cursor_location = cursor  # the agent writes on above the quote

    def refresh_mode(self) -> None:
        """Border, label, email fields and counter for the mode and channel now."""
        if self.has_class("-note") != self.note_mode:  # set_class restyles the composer even when nothing changes
            self.set_class(self.note_mode, "-note")
        mode = Text("Internal note", style="bold") if self.note_mode else Text("Reply")
        show_line(self.query_one("#composer-mode", Static), mode, layout=True)  # width: auto
        self._show_email_fields()
        self.refresh_counter()

    def refresh_counter(self) -> None:
        if self.note_mode:
            line = Text("only colleagues see it · ctrl+n reply instead · ctrl+s save", style="dim")
        elif self.channel in COUNTED_CHANNELS:
            line = Text(sms_count(self.text).describe())
        else:
            quote = " · ctrl+o quote" if self.is_email else ""
            line = Text(f"ctrl+s send{quote} · ctrl+t canned · ctrl+n note", style="dim")
        show_line(self.query_one("#composer-hint", Static), line)

    def _show_email_fields(self) -> None:
        """To, Subject and Cc while writing an email (reading keeps the rows for the timeline). Set on the fields
        alone: a class on the composer would restyle all its widgets on every move through the queue."""
        fields = self.query_one("#email-fields")
        wanted = self.is_email and self.has_class("-writing")
        if fields.display != wanted:
            fields.display = wanted

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.add_class("-writing")
        self._show_email_fields()

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        self.call_after_refresh(self._still_writing)  # focus may be moving to another field of the composer

    def _still_writing(self) -> None:
        self.set_class(self.has_focus_within, "-writing")
        self._show_email_fields()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:  # it bubbles on to the app's draft autosave
        self.refresh_counter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.reply.focus()  # enter in Subject or Cc: on to the text

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.refresh_mode()
        self._key_changed()

    def _key_changed(self) -> None:
        if self.draft_key != self._draft_key:
            old, self._draft_key = self._draft_key, self.draft_key
            self.post_message(self.DraftMoved(old, self._draft_key))

    def _prefilled_subject(self) -> str:
        """ "Re: " and the subject of the customer's latest email (else the conversation's), made inert."""
        context = self.context
        if context is None:
            return ""
        return reply_subject(clean_line((context.answered.subject if context.answered else None) or context.subject))

    # --- canned responses ---------------------------------------------------------------------------

    def offered(self) -> list[Any]:
        return canned_text.available(self.canned, self.channel)

    def complete_canned(self, token: str, tab: bool) -> bool:
        """`::token` then tab or space: insert the one response it names; True when the key was used."""
        found = canned_text.matching(self.offered(), token)
        exact = len(found) == 1 and found[0].name.lower() == token.lower()
        if not tab and not exact:
            return False  # a space after an unknown ::word is just a space
        if len(found) == 1:
            self.insert_canned(found[0])
        elif found:
            self.pick_canned(found)
        else:
            self.notify(f"No canned response starts with {token!r}.", severity="warning", markup=False)
        return True

    def pick_canned(self, entries: list[Any] | None = None) -> None:
        from agentdesk.tui.screens.pick import PickModal

        entries = self.offered() if entries is None else entries
        if not entries:
            self.notify("No canned responses for this channel: an admin adds them as [[canned]] in the client config.",
                        severity="warning", markup=False)
            return
        choices = [(safe_text(canned_text.describe(entry), one_line=True, limit=66), entry) for entry in entries]
        self.app.push_screen(PickModal("Canned response", choices), self._picked)

    def _picked(self, entry: Any | None) -> None:
        if entry is not None:
            self.insert_canned(entry)
        self.reply.focus()

    def insert_canned(self, entry: Any) -> bool:
        """Render `entry` and put it in place of the `::token` before the cursor (or at the cursor)."""
        if self.context is None:
            return False
        try:
            rendered = canned_text.render(entry, self.context.variables(self.channel))
        except canned_text.CannedError as exc:
            self.notify(str(exc), title="Canned response not inserted", severity="error", timeout=10, markup=False)
            return False
        reply = self.reply
        row, column = reply.cursor_location
        token = canned_text.token_before(reply.document[row][:column])
        start = (row, column - len(token) - 2) if token is not None else reply.selection.start
        reply.replace(rendered, start, reply.selection.end if token is None else (row, column), maintain_selection_offset=False)
        return True
