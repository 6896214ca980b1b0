"""The desk: queue, merged timeline and composer over the local cache, synced in the background."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events
from textual.actions import parse as parse_action
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

from agentdesk.config.keymap import DEFAULT_KEYMAP, KeySpec
from agentdesk.runtime import freeze_once
from agentdesk.config.keynames import parse_key_list
from agentdesk.domain.clock import to_iso, utcnow
from agentdesk.domain.text import clean, clean_line, safe_text
from agentdesk.store import queue as queue_store
from agentdesk.store.cache import Cache, Identity, QueueRow, TransferTarget
from agentdesk.store.queue import QueueView
from agentdesk.sync.engine import SyncEngine, SyncStatus
from agentdesk.tui.choices import DISPOSITIONS, PRIORITIES, SNOOZE_HINT, reply_channels, parse_snooze, parse_tag, retagged, snooze_presets, tags_of
from agentdesk.tui import layout, themes
from agentdesk.tui.render import CHANNEL_NAME, PRIORITY_STYLE, channel_label, conversation_facts, span, target_label
from agentdesk.tui import presence as desk_presence
from agentdesk.tui.screens.confirm import ConfirmModal
from agentdesk.tui.screens.help import HelpScreen
from agentdesk.tui.screens.pick import PickModal
from agentdesk.tui import queue_view as queue_ui
from agentdesk.tui.widgets.footer import DeskFooter
from agentdesk.tui.widgets.queue import QueueList
from agentdesk.tui.widgets.timeline import Timeline

if TYPE_CHECKING:
    from textual.widgets import TextArea

    from agentdesk.tui.widgets.composer import Composer, ReplyContext


def key_bindings(keymap: Iterable[KeySpec]) -> list[Binding]:
    return [Binding(s.keys, s.action, s.description, show=s.show, id=s.id, priority=s.priority) for s in keymap]


def composer_widgets():  # noqa: ANN201 - tui/widgets/composer.py (TextArea, Select) loads after the first frame
    from agentdesk.tui.widgets import composer

    return composer


def desk_commands():  # noqa: ANN201 - the palette provider, imported when the palette first opens
    from agentdesk.tui.commands import DeskCommands

    return DeskCommands


PaletteCommand = tuple[str, str, Callable[[], Any]]  # title (plain text), help, callback


DRAFT_DEBOUNCE = 0.5  # seconds of quiet before a draft is written
KEY_REPEAT_GAP = 0.05  # s: queue moves closer together than this are a held key: open when it is let go
# App actions that do not act on the highlighted conversation, so a pending open need not catch up first (quit
# must not mark seen, nor tell the server the agent views, a conversation they never looked at); the palette's
# and the search's own choices go through run_action again, or open what they found.
NO_OPEN_FIRST = frozenset({
    "queue_move", "open_conversation", "quit", "help", "search", "command_palette", "toggle_availability",
})
EARLY_INPUT = (events.InputEvent, events.Paste)  # held until the desk is whole (AgentDesk.on_event)


class SyncStatusChanged(Message):
    def __init__(self, status: SyncStatus) -> None:
        super().__init__()
        self.status = status


class AgentDesk(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "agentdesk"
    BINDINGS = key_bindings(DEFAULT_KEYMAP)  # rebound by id from the client TOML via set_keymap
    COMMANDS = App.COMMANDS | {desk_commands}
    HORIZONTAL_BREAKPOINTS = layout.HORIZONTAL_BREAKPOINTS  # -narrow / -medium / -wide on each screen (app.tcss)
    VERTICAL_BREAKPOINTS = layout.VERTICAL_BREAKPOINTS  # -short / -tall

    def __init__(
        self,
        cache_path: Path,
        me: Identity,
        *,
        engine: SyncEngine | None = None,
        keymap: Mapping[str, str] | None = None,
        theme: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        bell_on_assignment: bool = True,
        canned: Iterable[Any] = (),
        notices: Iterable[str] = (),
    ) -> None:
        freeze_once("desk imports")  # what the imports built lives as long as the process: no collection need walk
        # it again (a full one took ~20 ms of the first frame)
        super().__init__()
        self.startup_notices = list(notices)  # for the agent as the desk opens (a rebuilt cache, say)
        self.canned = list(canned)  # [[canned]] responses from the client TOML, for the composer
        self.cache = Cache(cache_path)
        self.bell_on_assignment = bell_on_assignment
        self.availability = desk_presence.saved_availability(self.cache)  # available | away, kept across restarts
        self.collisions = desk_presence.CollisionWatch()
        self._send_anyway = False  # the agent confirmed a send over a collision
        self.me = me
        self.engine = engine
        self.clock = clock
        self.sync_status = SyncStatus(online=engine is None)
        self.open_row: QueueRow | None = None
        self.open_state: dict[str, Any] | None = None  # the open conversation's row as the cache has it now
        self.queue_view = QueueView()  # tab, filters and sort of the queue (store/queue.py)
        self._draft_timer: Timer | None = None
        self._to_open: QueueRow | None = None  # highlighted in the queue, not opened yet (see queue_moved)
        self._open_timer: Timer | None = None
        self._last_move = 0.0
        self._shown_id: str | None = None  # the conversation the agent last moved to or opened (may be ahead of open_row)
        self._status_bar: Static | None = None  # set at mount; see closing()
        self._early_input: list[events.Event] | None = []  # input before finish_startup, held until it is done
        # Textual matches key names ("question_mark"), so a "?" from the file or the defaults is named first.
        self.keys_by_id = {s.id: ",".join(parse_key_list((keymap or {}).get(s.id, s.keys))) for s in DEFAULT_KEYMAP}
        self._keymap_actions = [spec.action for spec in DEFAULT_KEYMAP]
        self._bindings_applied: tuple | None = None  # what check_action said when the footer was last refreshed
        self.set_keymap(self.keys_by_id)
        themes.install(self)  # the high-contrast theme, readable colours on light themes
        if theme:
            self.theme = theme

    # --- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Horizontal(id="main"):
            with Vertical(id="queue-pane"):
                yield Static(id="queue-title")
                yield QueueList(self._fetch_queue, self._count_queue, self.queue_moved, id="queue")
            with Vertical(id="conversation-pane"):
                yield Static(id="timeline-title")
                yield Static(id="conversation-facts")
                yield Static(id="conversation-presence")  # shown only while other agents are here
                yield Timeline(id="timeline")
        # the composer and the footer come after the first frame (finish_startup): the queue shows sooner

    def on_mount(self) -> None:
        self._status_bar = self.query_one("#status", Static)
        themes.follow_theme(self)
        queue = self.query_one(QueueList)
        queue.now = self.clock
        queue.me = self.me.agent_id
        queue.focus()
        self.queue_view = self.starting_view()
        if self.engine is not None:
            self.sync_status = self.engine.status
        self.refresh_data()  # the queue and its first conversation, in the first frame
        self.refresh_status()
        self.call_after_refresh(self.finish_startup)

    @property
    def starting(self) -> bool:
        """Before finish_startup: no composer, footer or sync engine yet."""
        return self._early_input is not None

    async def finish_startup(self) -> None:
        """After the first frame: the composer and footer, the sync engine and presence. Input that comes sooner
        waits for this (on_event)."""
        mounts = self.query_one("#conversation-pane").mount(composer_widgets().Composer(self.canned, id="composer")), self.mount(DeskFooter())
        for mounted in mounts:
            await mounted
        self._early_input, early = None, self._early_input  # handled last, below, before any input that came since
        if self.engine is not None:
            # post_message is thread-safe and never blocks the sync thread on the UI
            self.engine.on_status = lambda status: self.post_message(SyncStatusChanged(status))
            self.engine.on_live = lambda kind, data: self.post_message(desk_presence.PresenceEvent())
            self.engine.start()
            self.engine.set_availability(self.availability)  # routing assigns work from now on (unless away)
        if self.open_row is not None:  # opened for the first frame: what it left for now
            self.announce_viewing()
            self.load_composer(self.open_row)
        self.show_notices(self.startup_notices)
        self.set_interval(1.0, self.refresh_status)
        # The widget tree, its styles and caches live as long as the desk: frozen too, a full collection (due
        # every few keys, as Textual's strips hold reference cycles) walks half as much (~40 -> ~20 ms).
        freeze_once("desk")
        for event in early:  # handled here, in order: posted again they would queue behind input that came since
            await super().on_event(event)

    async def on_event(self, event: events.Event) -> None:
        if self._early_input is not None and isinstance(event, EARLY_INPUT) and not event.is_forwarded:
            self._early_input.append(event)  # a key before finish_startup: acted on once the desk is whole
            return
        await super().on_event(event)

    def on_unmount(self) -> None:
        if self.engine is not None:
            self.engine.stop(timeout=1.0)

    # --- data into widgets ------------------------------------------------------------------------

    # --- queue: tabs, filters, sort, unread and viewing markers (store/queue.py, tui/queue_view.py) ---------

    def _fetch_queue(self, offset: int, limit: int, total: int) -> list[QueueRow]:
        return queue_store.rows(self.cache.db, self.me, self.queue_view, offset, limit, total)

    def _count_queue(self) -> int:
        return queue_store.count(self.cache.db, self.me, self.queue_view)

    def starting_view(self) -> QueueView:
        """The desk opens on Mine when the agent has work assigned, else on Unassigned: the work to pick up."""
        mine = queue_store.count(self.cache.db, self.me, QueueView("mine"), cap=1)
        return QueueView("mine" if mine else "unassigned")

    def refresh_queue(self) -> None:
        queue = self.query_one(QueueList)
        if self.open_row is not None:  # new messages on the open conversation are in sight: they are read
            self.mark_seen(self.open_row.id)
        queue.viewed = self.viewed_by_others()
        queue.reload()
        counts = queue_store.tab_counts(self.cache.db, self.me, self.queue_view, queue_ui.COUNT_CAP, current=queue.total)
        self.query_one("#queue-title", Static).update(queue_ui.TabStrip(counts, self.queue_view), layout=False)

    def set_queue_view(self, view: QueueView) -> None:
        """Show another tab, filter or sort: from its top, opening nothing new until the agent moves."""
        self.queue_view = view
        queue = self.query_one(QueueList)
        queue.cursor = 0
        queue.scroll_to(y=0, animate=False)
        self.refresh_queue()

    def action_next_tab(self, delta: int) -> None:
        self.set_queue_view(self.queue_view.next_tab(delta))

    def action_sort_queue(self) -> None:
        self.set_queue_view(self.queue_view.next_sort())

    def action_filter_queue(self) -> None:
        self.push_screen(queue_ui.FilterModal(self.queue_view.filters), self.filter_queue)

    def filter_queue(self, filters: queue_store.Filters | None) -> None:
        if filters is not None:  # escape keeps the filter; an empty one clears it
            self.set_queue_view(replace(self.queue_view, filters=filters))

    def mark_seen(self, conversation_id: str) -> None:
        try:
            if queue_store.mark_seen(self.cache, conversation_id):
                self.query_one(QueueList).mark_read(conversation_id)
        except sqlite3.Error:  # a busy or full disk: the marker stays, nothing else is lost
            pass

    def viewed_by_others(self) -> frozenset[str]:
        return frozenset(c for a, c in self.sync_status.presence.viewing().items() if a != self.me.agent_id)

    def queue_keys_apply(self) -> bool:
        """`tab` cycles the queue's tabs while the queue or the timeline has focus (from the desk or its palette);
        elsewhere it moves focus as usual (the composer, a picker's input)."""
        from textual.command import CommandPalette

        desk = self.screen_stack[0]
        if self.screen is not desk and not isinstance(self.screen, CommandPalette):
            return False
        return desk.focused is None or isinstance(desk.focused, (QueueList, Timeline))

    def open_conversation(self, row: QueueRow) -> None:
        self._stash_draft()
        self.open_row = row
        self._shown_id = row.id
        self.mark_seen(row.id)
        self.announce_viewing()
        self.refresh_open_timeline(fresh=True)
        self.refresh_header()
        self.refresh_presence()  # who else is on this one, in the same frame
        self.load_composer(row)

    def refresh_open_timeline(self, fresh: bool = False) -> str:
        """Show the open conversation's customer's merged timeline; returns the customer's name. The same
        customer's reloads in place (only its loaded window; the scroll position kept), `fresh` opens anew."""
        if self.open_row is None:
            return ""
        customer = self.cache.customer(self.open_row.customer_id) or {}
        name = customer.get("display_name") or self.open_row.customer_name
        self.query_one(Timeline).show(name, self.cache.timeline(self.open_row.customer_id), fresh=fresh)
        return name

    def refresh_header(self) -> None:
        """Title and state of the open conversation, read afresh from the cache (so an action shows at once);
        the actions that apply follow it."""
        state = self.open_state = self.cache.conversation(self.open_row.id) if self.open_row else None
        self.refresh_bindings_if_changed()
        title, facts = Text(""), Text("")
        if state is not None:
            customer = self.cache.customer(state["customer_id"]) or {}
            title = Text.assemble(
                safe_text(customer.get("display_name") or self.open_row.customer_name, "bold", one_line=True, limit=40),
                ("  ·  ", "dim"),
                (channel_label(state["channel"]), ""),
                ("  ·  ", "dim"),
                safe_text(state.get("subject") or "(no subject)", "italic", one_line=True, limit=60),
            )
            facts = conversation_facts(state, self.me.agent_id, tags_of(state))
        layout.show_line(self.query_one("#timeline-title", Static), title)
        layout.show_line(self.query_one("#conversation-facts", Static), facts)

    def closing(self) -> bool:
        """The desk's widgets are not there (yet, or any more: a timer or sync report that fires while it shuts
        down). Asked on every move through the queue, so not a DOM query."""
        return self._status_bar is None or self._status_bar.ancestors[-1:] != [self]

    def refresh_status(self) -> None:
        if self.closing():
            return
        s = self.sync_status
        state = ("● online", "green") if s.online else ("○ offline", "red")
        parts: list[tuple[str, str] | Text] = [("agentdesk", "bold"), ("  ", ""), safe_text(self.me.agent_name, "bold"), ("  ", ""), state]
        parts += [("  · ", "dim"), desk_presence.availability_label(self.availability)]
        if s.online and s.live:
            parts.append(("  · live", "green"))
        parts.append((f"  · {s.outbox} queued", "yellow" if s.outbox else "dim"))
        if s.bootstrapping:
            parts.append((f"  · loading {s.bootstrapping}", "cyan"))
        elif s.last_sync:
            parts.append((f"  · synced {span((self.clock() - s.last_sync).total_seconds())} ago", "dim"))
        if s.error and not s.online:
            parts.append(("  · ", "dim"))
            parts.append(safe_text(s.error, "red", one_line=True, limit=60))
        parts.append((f"  · {self.clock().astimezone():%H:%M}", "dim"))
        layout.show_line(self.query_one("#status", Static), Text.assemble(*parts))
        self.refresh_presence()  # typing fades after a few seconds: the 1 s tick takes it away

    def on_sync_status_changed(self, message: SyncStatusChanged) -> None:
        status = self.sync_status = message.status
        if self.closing():  # a report that arrived while the desk closes: nothing left to paint
            return
        self.show_notices(status.notices)
        if status.changed:  # not per bootstrap page: the first load finishes sooner without repaints
            self.refresh_data()
        if status.assigned:
            self.announce_assignments(status.assigned)
        self.refresh_status()

    def show_notices(self, notices: Iterable[str]) -> None:
        for notice in notices:
            self.notify(clean(notice), severity="warning", timeout=8, markup=False)

    def refresh_data(self) -> None:
        """The cache changed under us: reload the queue window and the open timeline."""
        self.refresh_queue()
        if self.open_row is not None and self.cache.conversation(self.open_row.id) is None:
            self.open_row = None  # it left the agent's view (moved to another team)
        if self.open_row is None and (row := self.query_one(QueueList).current) is not None:
            self.open_conversation(row)
        else:
            self.refresh_open_timeline()
            self.refresh_header()

    # --- events and actions -----------------------------------------------------------------------

    def queue_moved(self, row: QueueRow) -> None:
        """The queue's highlight moved: its conversation opens now, in the highlight's frame — or, while a key is
        held (moves under KEY_REPEAT_GAP apart), once it is let go, so the highlight runs down the queue at the
        key rate and the conversations it passes are not opened (marked seen, announced as viewed) on the way.
        (Opened after the highlight's own frame, the conversation waited a frame or two more: Textual paces
        frames at 60 per second, and the frame after a pause comes 17-33 ms after it.)"""
        now = time.monotonic()
        repeating, self._last_move = now - self._last_move < KEY_REPEAT_GAP, now
        self._to_open = row
        if self._open_timer is not None:
            self._open_timer.stop()
        self._open_timer = self.set_timer(KEY_REPEAT_GAP, self.open_highlighted) if repeating else None
        if not repeating:
            self.open_highlighted()

    @property
    def open_pending(self) -> bool:
        """The queue's highlight is ahead of the open conversation (for a moment; benchmarks wait for it)."""
        return self._to_open is not None

    def open_highlighted(self) -> None:
        """Open the conversation the queue highlighted, if that is still to do."""
        row, self._to_open = self._to_open, None
        if self._open_timer is not None:
            self._open_timer.stop()
            self._open_timer = None
        if row is not None and not self.closing():
            self.open_conversation(row)

    async def run_action(self, action: Any, default_namespace: Any = None, namespaces: Any = None) -> bool:
        """Every action acts on what the agent sees highlighted: a pending open catches up first (a queue move
        leaves it pending, `enter` opens anyway). The queue's own paging keys only move its highlight."""
        destination, name, _ = parse_action(action) if isinstance(action, str) else action
        queue_local = not destination and isinstance(default_namespace, QueueList)
        if self._to_open is not None and not queue_local and name not in NO_OPEN_FIRST:
            self.open_highlighted()
        return await super().run_action(action, default_namespace, namespaces)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        """Autosave the draft a moment after typing stops."""
        self.note_typing(event.text_area)
        if self._draft_timer is not None:
            self._draft_timer.stop()
        self._draft_timer = self.set_timer(DRAFT_DEBOUNCE, self._stash_draft)

    def action_queue_move(self, delta: int) -> None:
        queue = self.query_one(QueueList)
        if delta > 0 and self._shown_id and queue.current and queue.current.id != self._shown_id:
            delta -= 1  # the open conversation left the queue (closed, snoozed…): the next is under the cursor
        queue.move(delta)
        self._shown_id = queue.current.id if queue.current else None

    def action_open_conversation(self) -> None:
        queue = self.query_one(QueueList)
        self._to_open = None  # opened here and now (open_highlighted, when its turn comes, finds nothing to do)
        if (row := queue.current) is not None:
            self.open_conversation(row)
            self.query_one(Timeline).focus()

    def action_focus_reply(self) -> None:
        if self.open_row is not None:
            self.composer.reply.focus()

    def action_focus_queue(self) -> None:
        self.query_one(QueueList).focus()

    def action_send_reply(self) -> None:
        if self.collision_check():
            return
        composer = self.composer
        try:
            out = composer.outgoing()
        except ValueError as exc:  # nothing written, or a Cc that is not an address
            self.notify(str(exc), severity="warning", markup=False)
            return
        if self.open_row is None:
            return
        try:
            self.cache.queue_interaction(
                self.me, self.open_row.id, out.channel, out.text, note=out.note, subject=out.subject, cc=out.cc or None
            )
        except (sqlite3.Error, OSError) as exc:  # e.g. a full disk: the text stays in the composer
            self.notify(f"Could not queue the reply: {exc}", severity="error", timeout=15, markup=False)
            return
        composer.clear()
        self.refresh_open_timeline()
        self.refresh_status_counts()
        if self.engine is not None:
            self.engine.wake(pull=False)  # the outbox to send: the live stream brings the answer
        sent = "Note saved for your team." if out.note else f"Reply queued on {CHANNEL_NAME.get(out.channel, out.channel)}."
        self.notify(sent, timeout=3, markup=False)

    def _stash_draft(self) -> None:
        """Keep the composer's text with the conversation being left, so it never follows the agent."""
        if self.open_row is None or self.closing() or self.starting:
            return
        try:
            composer = self.composer
            self.cache.save_draft(self.open_row.id, composer.draft_key, composer.text)
        except (sqlite3.Error, OSError) as exc:
            self.notify(f"Could not save the draft: {exc}", severity="error", markup=False)

    def refresh_status_counts(self) -> None:
        self.sync_status.outbox = self.cache.outbox_count()
        self.refresh_status()

    # --- composer (tui/widgets/composer.py) ---

    @property
    def composer(self) -> Composer:
        return self.query_one("#composer", composer_widgets().Composer)

    def load_composer(self, row: QueueRow) -> None:
        if self.starting:
            return  # no composer yet: finish_startup loads it
        channels = reply_channels(self.cache.customer_channels(row.customer_id), row.channel)
        self.composer.load(self.reply_context(row), channels, self.cache.latest_draft(row.id))

    def reply_context(self, row: QueueRow) -> ReplyContext:
        """The conversation as the composer needs it: names for templates, the address a reply goes to,
        the customer's latest email (its subject and text to quote)."""
        customer = self.cache.customer(row.customer_id) or {}
        latest = self.cache.latest_interaction(row.id, "channel = 'email' AND direction = 'inbound'")
        answered = composer_widgets().Answered(latest["text"] or "", latest["subject"], latest["occurred_at"]) if latest else None
        wrote_from = json.loads(latest["meta"] or "{}").get("address") if latest else None  # as the server picks it
        return composer_widgets().ReplyContext(
            conversation_id=row.id, channel=row.channel, subject=(self.open_state or {}).get("subject"),
            customer_name=customer.get("display_name") or row.customer_name, first_name=customer.get("first_name") or "",
            email=wrote_from or self.cache.customer_address(row.customer_id, "email"),
            phone=self.cache.customer_address(row.customer_id, "phone"), agent_name=self.me.agent_name, answered=answered,
        )

    def on_composer_draft_moved(self, message: Composer.DraftMoved) -> None:
        """Another channel or note mode, same text: the draft follows it (the old key's copy goes)."""
        if self.open_row is None:
            return
        try:
            self.cache.save_draft(self.open_row.id, message.old_key, "")
        except (sqlite3.Error, OSError) as exc:
            self.notify(f"Could not save the draft: {exc}", severity="error", markup=False)
        self._stash_draft()

    def action_note_mode(self) -> None:
        composer = self.composer
        composer.toggle_note()
        composer.reply.focus()

    def action_canned(self) -> None:
        self.composer.pick_canned()

    def action_toggle_quote(self) -> None:
        self.composer.toggle_quote()

    # --- conversation actions: optimistic change + outbox row (Cache.queue_conversation_change) ---------

    def change_conversation(self, kind: str, args: dict[str, Any], **changes: Any) -> None:
        """Apply an action to the open conversation: on screen now, to the server on the next sync."""
        if self.open_state is None:
            return
        try:
            self.cache.queue_conversation_change(self.open_state["id"], kind, args, changes)
        except (sqlite3.Error, OSError, LookupError) as exc:
            self.notify(f"Could not save the change: {exc}", severity="error", timeout=15, markup=False)
            return
        self.after_local_change()

    def after_local_change(self) -> None:
        """Show a local action at once (the next frame) and let the sync engine carry it to the server."""
        self.refresh_open_timeline()
        self.refresh_queue()
        self.refresh_header()
        self.refresh_status_counts()
        if self.engine is not None:
            self.engine.wake(pull=False)  # the outbox to send: the live stream brings the answer

    def action_assign_to_me(self) -> None:
        self.change_conversation("assign", {"agent_id": self.me.agent_id}, assignee_id=self.me.agent_id)

    def action_set_status(self, status: str) -> None:
        self.change_conversation("set_status", {"status": status}, status=status, snooze_until=None)

    def action_snooze(self) -> None:
        choices = [(Text(label), until) for label, until in snooze_presets(self.clock())]
        parse = lambda text: parse_snooze(text, self.clock())  # noqa: E731
        self.push_screen(PickModal("Snooze until", choices, parse=parse, placeholder=SNOOZE_HINT), self.snooze)

    def snooze(self, until: datetime | None) -> None:
        if until is not None:
            self.change_conversation("snooze", {"until": to_iso(until)}, status="snoozed", snooze_until=to_iso(until))

    def action_priority(self) -> None:
        choices = [(Text(p, style=PRIORITY_STYLE[p]), p) for p in PRIORITIES]
        current = (self.open_state or {}).get("priority")
        highlighted = PRIORITIES.index(current) if current in PRIORITIES else None
        self.push_screen(PickModal("Priority", choices, highlighted=highlighted), self.set_priority)

    def set_priority(self, priority: str | None) -> None:
        if priority is not None:
            self.change_conversation("set_priority", {"priority": priority}, priority=priority)

    def action_tag(self) -> None:
        tags = " ".join(f"#{tag}" for tag in tags_of(self.open_state or {}))
        heading = "Tag (-tag removes it)" + (f" · now {clean_line(tags, 50)}" if tags else "")
        self.push_screen(PickModal(heading, parse=parse_tag, placeholder="vip, refund, -vip"), self.retag)

    def retag(self, edit: tuple[str, str] | None) -> None:
        if edit is not None and self.open_state is not None:
            kind, name = edit
            self.change_conversation(kind, {"tag": name}, tags=retagged(tags_of(self.open_state), kind, name))

    def transfer_targets(self) -> list[TransferTarget]:
        """Where the open conversation can go (leaving out where it is: its team, as it is, or its assignee)."""
        state = self.open_state or {}
        here = lambda t: t.team_id == state.get("team_id") and t.agent_id in (None, state.get("assignee_id"))  # noqa: E731
        return [t for t in self.cache.transfer_targets(self.me) if not here(t)]

    def action_transfer(self) -> None:
        choices = [(target_label(t), t) for t in self.transfer_targets()]
        self.push_screen(PickModal("Transfer to", choices), self.transfer_to)

    def transfer_to(self, target: TransferTarget | None) -> None:
        """To a team (unassigned, unless the assignee is in it too) or to an agent, in that agent's team."""
        if target is None or self.open_state is None:
            return
        assignee = target.agent_id or self.open_state["assignee_id"]
        if target.agent_id is None and assignee and not self.cache.is_member(assignee, target.team_id):
            assignee = None
        args = {"to_team_id": target.team_id} | ({"to_agent_id": target.agent_id} if target.agent_id else {})
        self.change_conversation("transfer", args, team_id=target.team_id, assignee_id=assignee)

    # --- calls and deliveries: actions on one interaction of the open conversation ------------------------

    def action_callback(self) -> None:
        if self.open_state is None:
            return
        try:
            self.cache.queue_callback(self.me, self.open_state["id"])
        except (sqlite3.Error, OSError, LookupError) as exc:
            self.notify(f"Could not queue the callback: {exc}", severity="error", timeout=15, markup=False)
            return
        self.notify("Callback requested: the phone system will call the customer.", markup=False)
        self.after_local_change()

    def action_disposition(self) -> None:
        call = self.open_state and self.cache.latest_interaction(self.open_state["id"], "channel = 'phone' AND direction != 'note'")
        if not call:
            self.notify("This conversation has no call to record an outcome for.", severity="warning", markup=False)
            return
        choices = [(Text(d), d) for d in DISPOSITIONS]
        self.push_screen(
            PickModal("How did the call end?", choices, parse=lambda text: text.strip().lower() or None, placeholder="or type one"),
            lambda disposition: self.set_disposition(call, disposition),
        )

    def set_disposition(self, call: dict[str, Any], disposition: str | None) -> None:
        if disposition:
            meta = {**json.loads(call["meta"] or "{}"), "disposition": disposition}
            args = {"interaction_id": call["id"], "disposition": disposition}
            self.change_interaction(call["id"], "set_disposition", args, meta=meta)

    def action_retry_reply(self) -> None:
        failed = self.open_state and self.cache.latest_interaction(self.open_state["id"], "direction = 'outbound' AND delivery_status = 'failed'")
        if not failed:
            self.notify("No failed reply in this conversation.", markup=False)
            return
        self.change_interaction(failed["id"], "retry_delivery", {"interaction_id": failed["id"]}, delivery_status="queued")

    def change_interaction(self, interaction_id: str, kind: str, args: dict[str, Any], **changes: Any) -> None:
        try:
            self.cache.queue_row_change("interactions", interaction_id, kind, args, changes)
        except (sqlite3.Error, OSError, LookupError) as exc:
            self.notify(f"Could not save the change: {exc}", severity="error", timeout=15, markup=False)
            return
        self.after_local_change()

    # --- customer card ---

    def action_open_customer(self) -> None:
        from agentdesk.tui.screens.customer import CustomerScreen  # the card's module loads when first opened

        if self.open_state is not None:
            self.push_screen(CustomerScreen(self.open_state["customer_id"]))

    # --- search (store/search.py, tui/screens/search.py) ---

    def action_search(self) -> None:
        from agentdesk.tui.screens.search import SearchScreen  # loads when first opened

        self.push_screen(SearchScreen(self.cache.path), self.open_search_hit)

    def open_search_hit(self, hit: Any) -> None:
        """Open the hit's conversation (a customer's: their latest) and bring its interaction into view."""
        if hit is None:
            return
        if hit.conversation_id is None or not self.open_conversation_by_id(hit.conversation_id):
            self.notify("That conversation is no longer in the cache.", severity="warning", markup=False)
            return
        timeline = self.query_one(Timeline)
        timeline.focus()
        if hit.interaction_id:
            self.call_after_refresh(self._reveal, timeline, hit.interaction_id, 10)

    def _reveal(self, timeline: Timeline, interaction_id: str, tries: int) -> None:
        """The timeline may not be laid out yet in the frame after the search screen closes: try again shortly."""
        if not timeline.reveal(interaction_id) and tries > 1:
            self.set_timer(0.1, partial(self._reveal, timeline, interaction_id, tries - 1))

    def open_conversation_by_id(self, conversation_id: str) -> bool:
        """Open any cached conversation, in the queue or not: its queue row is built from the cache."""
        state = self.cache.conversation(conversation_id)
        if state is None:
            return False
        customer = self.cache.customer(state["customer_id"]) or {}
        self.open_conversation(QueueRow(
            state["id"], state["channel"], state["status"], state["priority"] or "normal", state["customer_id"],
            customer.get("display_name") or "?", "", state["last_message_at"] or "", state["sla_due"], state["assignee_id"],
            state.get("assignee_name"),
        ))
        return True

    # --- timeline (tui/widgets/timeline.py) ---

    def action_timeline_jump(self, delta: int) -> None:
        self.query_one(Timeline).jump(delta)

    def action_timeline_expand(self) -> None:
        self.query_one(Timeline).toggle_expanded()

    def action_help(self) -> None:
        rows = []
        for spec in DEFAULT_KEYMAP:
            keys = " / ".join(self.get_key_display(Binding(key, "")) for key in self.keys_by_id[spec.id].split(","))
            rows.append((keys, spec.description, spec.help, spec.id))
        self.push_screen(HelpScreen(rows))

    # --- presence: availability, who else is here, collisions, assignments (tui/presence.py) ------------

    def action_toggle_availability(self) -> None:
        self.availability = desk_presence.toggled(self.availability)
        try:
            desk_presence.save_availability(self.cache, self.availability)
        except (sqlite3.Error, OSError) as exc:  # still switched for this session
            self.notify(f"Could not keep the availability: {exc}", severity="error", markup=False)
        if self.engine is not None:
            self.engine.set_availability(self.availability)
        self.notify("Available: routing assigns you work." if self.availability == "available"
                    else "Away: routing leaves new work to others.", timeout=3, markup=False)
        self.refresh_status()

    def announce_viewing(self) -> None:
        self.collisions.forget()  # a collision mark belongs to the conversation it was taken on
        if self.engine is not None and not self.starting:  # (finish_startup starts presence, after the first frame)
            self.engine.set_viewing(self.open_row.id if self.open_row else None)

    def note_typing(self, area: TextArea) -> None:
        """The agent typed in the reply: tell the others (throttled by the engine) and mark the collision check."""
        if self.open_row is None or area.id != "reply":
            return
        if not area.text.strip():
            self.collisions.forget()  # sent or emptied: the next reply begins afresh
            return
        if not area.has_focus:
            return  # a draft loading, not the agent typing
        self.collisions.began_typing(self.cache, self.open_row.id, self.me.agent_id)
        if self.engine is not None:
            self.engine.typing(self.open_row.id)

    def on_presence_event(self, _event: desk_presence.PresenceEvent) -> None:
        self.refresh_presence()

    def refresh_presence(self) -> None:
        """Who else is viewing or typing on the open conversation, in the line under its header."""
        if self.closing():
            return
        line = Text("")
        if self.open_row is not None:
            line = desk_presence.who_is_here(self.cache, self.sync_status.presence, self.open_row.id, self.me.agent_id)
        widget = self.query_one("#conversation-presence", Static)
        layout.show_line(widget, line)  # shown or hidden below: display asks for the relayout itself
        self.query_one(QueueList).set_viewed(self.viewed_by_others())  # the queue's "someone's here" markers
        widget.display = bool(line)

    def collision_check(self) -> bool:
        """Before a send: True (and a confirm modal) when others wrote since the agent began typing."""
        if self._send_anyway or self.open_row is None:
            self._send_anyway = False
            self.collisions.forget()
            return False
        arrivals = self.collisions.arrivals(self.cache, self.open_row.id, self.me.agent_id)
        if not arrivals:
            return False
        question = desk_presence.collision_question(arrivals, self.clock())
        self.push_screen(ConfirmModal(question, "send anyway", "back to editing"), self.collision_answered)
        return True

    def collision_answered(self, send: bool | None) -> None:
        if send:
            self._send_anyway = True
            self.action_send_reply()
        elif self.open_row is not None:  # seen now: warn again only about what comes next
            self.collisions.forget()
            self.collisions.began_typing(self.cache, self.open_row.id, self.me.agent_id)

    def announce_assignments(self, conversation_ids: list[str]) -> None:
        """A pull assigned conversations to the agent (not their own doing): ring and say whose."""
        if notice := desk_presence.assignment_notice(self.cache, conversation_ids):
            if self.bell_on_assignment:
                self.bell()
            self.notify(notice, title="New assignment", timeout=8, markup=False)

    # --- what applies now: footer bindings and palette entries ------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        state = self.open_state
        if action in ("send_reply", "focus_reply", "priority", "tag", "transfer", "callback", "disposition", "retry_reply"):
            return state is not None
        if action == "assign_to_me":
            return state is not None and state["assignee_id"] != self.me.agent_id
        if action == "set_status":  # close anything not closed; reopen only what is closed or snoozed
            wanted = parameters[0] if parameters else None
            allowed_from = ("closed", "snoozed") if wanted == "open" else ("open", "pending", "snoozed")
            return state is not None and state["status"] in allowed_from and state["status"] != wanted
        if action == "snooze":
            return state is not None and state["status"] != "closed"
        if action == "open_customer":
            return state is not None
        if action == "next_tab":
            return self.queue_keys_apply()
        if action in ("timeline_jump", "timeline_expand"):
            return self.open_row is not None
        if action in ("note_mode", "canned", "toggle_quote"):  # the composer's; each says when it does not apply
            return self.open_row is not None
        return True

    def refresh_bindings_if_changed(self) -> None:
        """The footer rebuilds every key on refresh_bindings: only when what applies changed (not on every move
        through the queue, where it cost more than opening the conversation)."""
        applies = tuple(self.check_action(name, params) for _, name, params in map(parse_action, self._keymap_actions))
        if applies != self._bindings_applied:
            self._bindings_applied = applies
            self.refresh_bindings()

    def palette_commands(self, targets: bool) -> list[PaletteCommand]:
        """The keymap's actions that apply now (Quit is Textual's own), and with `targets` one entry per
        transfer target, for the command palette (tui/commands.py)."""
        commands: list[PaletteCommand] = []
        for spec in DEFAULT_KEYMAP:
            _, name, params = parse_action(spec.action)
            if name != "quit" and self.check_action(name, params) is not False:
                commands.append((spec.description, spec.help, partial(self.run_action, spec.action)))
        if targets and self.check_action("transfer", ()):
            for target in self.transfer_targets():
                title = "Transfer to " + target_label(target).plain
                commands.append((title, "Hand the open conversation over", partial(self.transfer_to, target)))
        return commands
