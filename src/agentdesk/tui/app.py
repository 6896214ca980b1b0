"""The desk: queue, merged timeline and composer over the local cache, synced in the background."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.actions import parse as parse_action
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Footer, Select, Static, TextArea

from agentdesk.config.keymap import DEFAULT_KEYMAP, KeySpec
from agentdesk.config.models import parse_key_list
from agentdesk.domain.clock import to_iso, utcnow
from agentdesk.domain.text import clean, clean_line, safe_text
from agentdesk.store.cache import Cache, Identity, QueueRow, TransferTarget
from agentdesk.sync.engine import SyncEngine, SyncStatus
from agentdesk.tui.choices import DISPOSITIONS, PRIORITIES, SNOOZE_HINT, reply_channels, parse_snooze, parse_tag, retagged, snooze_presets, tags_of
from agentdesk.tui.render import CHANNEL_NAME, PRIORITY_STYLE, channel_label, conversation_facts, span, target_label
from agentdesk.tui.screens.help import HelpScreen
from agentdesk.tui.screens.pick import PickModal
from agentdesk.tui.widgets.queue import QueueList
from agentdesk.tui.widgets.timeline import Timeline


def key_bindings(keymap: Iterable[KeySpec]) -> list[Binding]:
    return [Binding(s.keys, s.action, s.description, show=s.show, id=s.id) for s in keymap]


def desk_commands():  # noqa: ANN201 - the palette provider, imported when the palette first opens
    from agentdesk.tui.commands import DeskCommands

    return DeskCommands


PaletteCommand = tuple[str, str, Callable[[], Any]]  # title (plain text), help, callback


DRAFT_DEBOUNCE = 0.5  # seconds of quiet before a draft is written


class SyncStatusChanged(Message):
    def __init__(self, status: SyncStatus) -> None:
        super().__init__()
        self.status = status


class AgentDesk(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "agentdesk"
    BINDINGS = key_bindings(DEFAULT_KEYMAP)  # rebound by id from the client TOML via set_keymap
    COMMANDS = App.COMMANDS | {desk_commands}

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
        self.open_state: dict[str, Any] | None = None  # the open conversation's row as the cache has it now
        self._draft_timer: Timer | None = None
        # Textual matches key names ("question_mark"), so a "?" from the file or the defaults is named first.
        self.keys_by_id = {s.id: ",".join(parse_key_list((keymap or {}).get(s.id, s.keys))) for s in DEFAULT_KEYMAP}
        self.set_keymap(self.keys_by_id)
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
                yield Static(id="conversation-facts")
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
        self.refresh_open_timeline()
        self.refresh_header()
        channels = reply_channels(self.cache.customer_channels(row.customer_id), row.channel)
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

    def refresh_header(self) -> None:
        """Title and state of the open conversation, read afresh from the cache (so an action shows at once);
        the actions that apply follow it."""
        state = self.open_state = self.cache.conversation(self.open_row.id) if self.open_row else None
        self.refresh_bindings()
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
        self.query_one("#timeline-title", Static).update(title)
        self.query_one("#conversation-facts", Static).update(facts)

    def closing(self) -> bool:
        """The desk's widgets are already gone (a timer or sync report that fires while it shuts down)."""
        return not self.query("#status")

    def refresh_status(self) -> None:
        if self.closing():
            return
        s = self.sync_status
        state = ("● online", "green") if s.online else ("○ offline", "red")
        parts: list[tuple[str, str] | Text] = [("agentdesk", "bold"), ("  ", ""), safe_text(self.me.agent_name, "bold"), ("  ", ""), state]
        if s.online and s.live:
            parts.append(("  · live", "green"))
            if self.open_row is not None:  # read afresh at each paint: the stream updates it between reports
                viewers, typists = s.presence.here(self.open_row.id, self.me.agent_id)
                if typists or viewers:
                    parts.append((f"  · {len(typists)} typing" if typists else f"  · {len(viewers)} viewing", "cyan"))
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
        if self.closing():  # a report that arrived while the desk closes: nothing left to paint
            return
        for notice in status.notices:
            self.notify(clean(notice), severity="warning", timeout=8, markup=False)
        if status.changed:  # not per bootstrap page: the first load finishes sooner without repaints
            self.refresh_data()
        self.refresh_status()

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

    def on_queue_list_highlighted(self, message: QueueList.Highlighted) -> None:
        self.open_conversation(message.row)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        """Autosave the draft a moment after typing stops."""
        if self._draft_timer is not None:
            self._draft_timer.stop()
        self._draft_timer = self.set_timer(DRAFT_DEBOUNCE, self._stash_draft)

    def action_queue_move(self, delta: int) -> None:
        queue = self.query_one(QueueList)
        if delta > 0 and self.open_row and queue.current and queue.current.id != self.open_row.id:
            delta -= 1  # the open conversation left the queue (closed, snoozed…): the next is under the cursor
        queue.move(delta)

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
        if self.open_row is None or self.closing():
            return
        try:
            self.cache.save_draft(self.open_row.id, self._channel(), self.query_one("#reply", TextArea).text)
        except (sqlite3.Error, OSError) as exc:
            self.notify(f"Could not save the draft: {exc}", severity="error", markup=False)

    def refresh_status_counts(self) -> None:
        self.sync_status.outbox = self.cache.outbox_count()
        self.refresh_status()

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
            self.engine.wake()

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

    def action_help(self) -> None:
        rows = []
        for spec in DEFAULT_KEYMAP:
            keys = " / ".join(self.get_key_display(Binding(key, "")) for key in self.keys_by_id[spec.id].split(","))
            rows.append((keys, spec.description, spec.help, spec.id))
        self.push_screen(HelpScreen(rows))

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
        return True

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
