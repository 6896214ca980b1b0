"""The desk: queue, merged timeline and composer over the local cache, synced in the background."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.screen import Screen
from textual.widgets import Footer, Select, Static, TextArea

from agentdesk.config.keymap import DEFAULT_KEYMAP, KeySpec
from agentdesk.domain.clock import utcnow
from agentdesk.domain.text import clean, safe_text
from agentdesk.store.cache import Cache, Identity, QueueRow
from agentdesk.sync.engine import SyncEngine, SyncStatus
from agentdesk.tui.render import CHANNEL_NAME, channel_label, span
from agentdesk.tui.widgets.queue import QueueList
from agentdesk.tui.widgets.timeline import Timeline


def key_bindings(keymap: Iterable[KeySpec]) -> list[Binding]:
    return [Binding(s.keys, s.action, s.description, show=s.show, id=s.id) for s in keymap]


DRAFT_DEBOUNCE = 0.5  # seconds of quiet before a draft is written


class SyncStatusChanged(Message):
    def __init__(self, status: SyncStatus) -> None:
        super().__init__()
        self.status = status


class AgentDesk(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "agentdesk"
    BINDINGS = key_bindings(DEFAULT_KEYMAP)  # rebound by id from the client TOML via set_keymap

    def __init__(
        self,
        cache_path: Path,
        me: Identity,
        *,
        engine: SyncEngine | None = None,
        keymap: Mapping[str, str] | None = None,
        theme: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__()
        self.cache = Cache(cache_path)
        self.me = me
        self.engine = engine
        self.clock = clock
        self.sync_status = SyncStatus(online=engine is None)
        self.open_row: QueueRow | None = None
        self._draft_timer: Timer | None = None
        if keymap:
            self.set_keymap(dict(keymap))
        if theme:
            self.theme = theme

    # --- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Horizontal(id="main"):
            with Vertical(id="queue-pane"):
                yield Static(id="queue-title")
                yield QueueList(self._fetch_queue, self._count_queue, id="queue")
            with Vertical(id="conversation-pane"):
                yield Static(id="timeline-title")
                yield Timeline(id="timeline")
                with Vertical(id="composer"):
                    with Horizontal(id="composer-bar"):
                        yield Select([], id="channel", allow_blank=True, prompt="Channel")
                        yield Static(id="composer-hint")
                    yield TextArea(id="reply", soft_wrap=True, show_line_numbers=False)
        yield Footer()

    def on_mount(self) -> None:
        queue = self.query_one(QueueList)
        queue.now = self.clock
        queue.focus()
        if self.engine is not None:
            # post_message is thread-safe and never blocks the sync thread on the UI
            self.engine.on_status = lambda status: self.post_message(SyncStatusChanged(status))
            self.engine.start()
            self.sync_status = self.engine.status
        self.refresh_data()
        self.refresh_status()
        self.set_interval(1.0, self.refresh_status)

    def on_unmount(self) -> None:
        if self.engine is not None:
            self.engine.stop(timeout=1.0)

    # --- data into widgets ------------------------------------------------------------------------

    def _fetch_queue(self, offset: int, limit: int) -> list[QueueRow]:
        return self.cache.queue(self.me, offset, limit)

    def _count_queue(self) -> int:
        return self.cache.queue_count(self.me)

    def refresh_queue(self) -> None:
        queue = self.query_one(QueueList)
        queue.reload()
        title = Text.assemble(("Queue ", "bold"), (f"{queue.total:,} open · mine and unassigned", "dim"))
        self.query_one("#queue-title", Static).update(title)

    def open_conversation(self, row: QueueRow) -> None:
        self._stash_draft()
        self.open_row = row
        self.refresh_bindings()  # reply and send apply now
        name = self.refresh_open_timeline()
        conversation = self.cache.conversation(row.id) or {}
        title = Text.assemble(
            safe_text(name, "bold", one_line=True, limit=40),
            ("  ·  ", "dim"),
            (channel_label(row.channel), ""),
            ("  ·  ", "dim"),
            safe_text(conversation.get("subject") or "(no subject)", "italic", one_line=True, limit=60),
        )
        self.query_one("#timeline-title", Static).update(title)
        channels = self.cache.customer_channels(row.customer_id) or [row.channel]
        select = self.query_one("#channel", Select)
        select.set_options([(channel_label(c), c) for c in channels])
        draft_channel, draft = self.cache.latest_draft(row.id) or (row.channel, "")
        select.value = draft_channel if draft_channel in channels else channels[0]
        self.query_one("#reply", TextArea).load_text(draft)
        self.query_one("#composer-hint", Static).update(Text("ctrl+s sends · escape back to queue", style="dim"))

    def refresh_open_timeline(self) -> str:
        """Show the open conversation's customer's merged timeline; returns the customer's name."""
        if self.open_row is None:
            return ""
        customer = self.cache.customer(self.open_row.customer_id) or {}
        name = customer.get("display_name") or self.open_row.customer_name
        self.query_one(Timeline).show(name, self.cache.timeline(self.open_row.customer_id))
        return name

    def refresh_status(self) -> None:
        s = self.sync_status
        state = ("● online", "green") if s.online else ("○ offline", "red")
        parts: list[tuple[str, str] | Text] = [("agentdesk", "bold"), ("  ", ""), safe_text(self.me.agent_name, "bold"), ("  ", ""), state]
        parts.append((f"  · {s.outbox} queued", "yellow" if s.outbox else "dim"))
        if s.bootstrapping:
            parts.append((f"  · loading {s.bootstrapping}", "cyan"))
        elif s.last_sync:
            parts.append((f"  · synced {span((utcnow() - s.last_sync).total_seconds())} ago", "dim"))
        if s.error and not s.online:
            parts.append(("  · ", "dim"))
            parts.append(safe_text(s.error, "red", one_line=True, limit=60))
        parts.append((f"  · {self.clock().astimezone():%H:%M}", "dim"))
        self.query_one("#status", Static).update(Text.assemble(*parts))

    def on_sync_status_changed(self, message: SyncStatusChanged) -> None:
        status = self.sync_status = message.status
        for notice in status.notices:
            self.notify(clean(notice), severity="warning", timeout=8, markup=False)
        if status.changed:  # not per bootstrap page: the first load finishes sooner without repaints
            self.refresh_data()
        self.refresh_status()

    def refresh_data(self) -> None:
        """The cache changed under us: reload the queue window and the open timeline."""
        self.refresh_queue()
        if self.open_row is None and (row := self.query_one(QueueList).current) is not None:
            self.open_conversation(row)
        else:
            self.refresh_open_timeline()

    # --- events and actions -----------------------------------------------------------------------

    def on_queue_list_highlighted(self, message: QueueList.Highlighted) -> None:
        self.open_conversation(message.row)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        """Autosave the draft a moment after typing stops."""
        if self._draft_timer is not None:
            self._draft_timer.stop()
        self._draft_timer = self.set_timer(DRAFT_DEBOUNCE, self._stash_draft)

    def action_queue_move(self, delta: int) -> None:
        self.query_one(QueueList).move(delta)

    def action_open_conversation(self) -> None:
        queue = self.query_one(QueueList)
        if (row := queue.current) is not None:
            self.open_conversation(row)
            self.query_one(Timeline).focus()

    def action_focus_reply(self) -> None:
        if self.open_row is not None:
            self.query_one("#reply", TextArea).focus()

    def action_focus_queue(self) -> None:
        self.query_one(QueueList).focus()

    def action_send_reply(self) -> None:
        reply = self.query_one("#reply", TextArea)
        text = reply.text.strip()
        if self.open_row is None or not text:
            self.notify("Nothing to send: pick a conversation and write a reply first.", severity="warning")
            return
        channel = self._channel()
        try:
            self.cache.queue_interaction(self.me, self.open_row.id, channel, text)
        except (sqlite3.Error, OSError) as exc:  # e.g. a full disk: the text stays in the composer
            self.notify(f"Could not queue the reply: {exc}", severity="error", timeout=15, markup=False)
            return
        reply.clear()
        self.refresh_open_timeline()
        self.refresh_status_counts()
        if self.engine is not None:
            self.engine.wake()
        self.notify(f"Reply queued on {CHANNEL_NAME.get(channel, channel)}.", timeout=3, markup=False)

    def _channel(self) -> str:
        value = self.query_one("#channel", Select).value
        return value if isinstance(value, str) else (self.open_row.channel if self.open_row else "email")

    def _stash_draft(self) -> None:
        """Keep the composer's text with the conversation being left, so it never follows the agent."""
        if self.open_row is None:
            return
        try:
            self.cache.save_draft(self.open_row.id, self._channel(), self.query_one("#reply", TextArea).text)
        except (sqlite3.Error, OSError) as exc:
            self.notify(f"Could not save the draft: {exc}", severity="error", markup=False)

    def refresh_status_counts(self) -> None:
        self.sync_status.outbox = self.cache.outbox_count()
        self.refresh_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("send_reply", "focus_reply"):
            return self.open_row is not None
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self.open_row is not None:
            yield SystemCommand("Reply", "Write a reply to the open conversation", self.action_focus_reply)
            yield SystemCommand("Send reply", "Send what is in the composer", self.action_send_reply)
        yield SystemCommand("Next conversation", "Move down the queue", lambda: self.action_queue_move(1))
        yield SystemCommand("Previous conversation", "Move up the queue", lambda: self.action_queue_move(-1))
        yield SystemCommand("Focus queue", "Back to the queue", self.action_focus_queue)
