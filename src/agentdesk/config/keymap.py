"""The desk's key bindings as data: ids, default keys, descriptions.

Pure data so the config loader can validate a `[keymap]` table without importing Textual;
the TUI turns these into Textual bindings. An admin rebinds by id in the client TOML:

    [keymap]
    "reply.send" = "ctrl+s,ctrl+enter"
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeySpec:
    id: str
    keys: str  # comma-separated Textual key names
    action: str  # Textual action on the app
    description: str  # the footer's and the command palette's title
    show: bool = True  # listed in the footer
    help: str = ""  # a sentence for the help screen and the palette
    priority: bool = False  # checked before the focused widget's and the screen's own keys (see app.check_action)


DEFAULT_KEYMAP: tuple[KeySpec, ...] = (
    KeySpec("app.quit", "q", "quit", "Quit", help="Quit the desk (queued work stays in the outbox)"),
    KeySpec("app.help", "?", "help", "Help", help="List every key binding"),
    KeySpec("queue.down", "j,down,]", "queue_move(1)", "Next conversation", show=False, help="Open the next conversation in the queue"),
    KeySpec("queue.up", "k,up,[", "queue_move(-1)", "Previous conversation", show=False, help="Open the previous conversation in the queue"),
    KeySpec("queue.open", "enter", "open_conversation", "Open", help="Open the highlighted conversation and read its timeline"),
    KeySpec("reply.focus", "r", "focus_reply", "Reply", help="Write a reply to the open conversation"),
    KeySpec("reply.send", "ctrl+s,ctrl+enter", "send_reply", "Send", help="Send what is in the composer"),
    KeySpec("queue.focus", "escape", "focus_queue", "Queue", show=False, help="Back to the queue"),
    KeySpec("conversation.assign", "a", "assign_to_me", "Assign to me", help="Take the open conversation"),
    KeySpec("conversation.close", "e", "set_status('closed')", "Close", help="Close the open conversation (done)"),
    KeySpec("conversation.reopen", "o", "set_status('open')", "Reopen", help="Reopen a closed or snoozed conversation"),
    KeySpec("conversation.snooze", "s", "snooze", "Snooze", help="Hide the conversation until a time you pick"),
    KeySpec("conversation.priority", "p", "priority", "Priority", show=False, help="Set the priority: low, normal, high or urgent"),
    KeySpec("conversation.tag", "t", "tag", "Tag", show=False, help="Add a tag (or remove one: -tag)"),
    KeySpec("conversation.transfer", "T", "transfer", "Transfer", show=False, help="Hand the conversation to another team or agent"),
    KeySpec("conversation.callback", "b", "callback", "Call back", show=False, help="Have the phone system call the customer back"),
    KeySpec("conversation.disposition", "d", "disposition", "Disposition", show=False, help="Record how the latest call ended"),
    KeySpec("reply.retry", "R", "retry_reply", "Retry", show=False, help="Send the latest failed reply again"),
    # queue view: tabs, filters, sort
    KeySpec("queue.tab", "tab", "next_tab(1)", "Next tab", show=False, priority=True, help="Cycle the queue tabs: Mine, Unassigned, Team, All"),
    KeySpec("queue.tab_back", "shift+tab", "next_tab(-1)", "Previous tab", show=False, priority=True, help="Cycle the queue tabs backwards"),
    KeySpec("queue.filter", "f", "filter_queue", "Filter", help="Filter the queue by channel, status, priority or tag"),
    KeySpec("queue.sort", "S", "sort_queue", "Sort", show=False, help="Sort the queue by SLA due, newest or priority"),
    # customer card
    KeySpec("customer.open", "c", "open_customer", "Customer", help="Open the customer card: identities, tags, notes, merges"),
    # search
    KeySpec("search.open", "slash", "search", "Search", help="Search every cached message and customer"),
    # composer
    KeySpec("composer.note", "n,ctrl+n", "note_mode", "Note", show=False, help="Switch the composer between reply and internal note"),
    KeySpec("composer.canned", "ctrl+t", "canned", "Canned", show=False, help="Insert a canned response (or type ::name in the composer)"),
    KeySpec("composer.quote", "ctrl+o", "toggle_quote", "Quote", show=False, help="Email: quote the message being answered in the reply"),
    # timeline
    KeySpec("timeline.next_conversation", "}", "timeline_jump(1)", "Next in timeline", show=False, help="Jump to the next conversation in the timeline"),
    KeySpec("timeline.previous_conversation", "{", "timeline_jump(-1)", "Previous in timeline", show=False, help="Jump to the previous conversation in the timeline"),
    KeySpec("timeline.expand", "x", "timeline_expand", "Expand", show=False, help="Show or hide quoted email text and full call transcripts"),
    # presence
    KeySpec("agent.availability", "A", "toggle_availability", "Available/away", show=False, help="Switch between available (routing assigns you work) and away"),
)

BINDING_IDS: frozenset[str] = frozenset(spec.id for spec in DEFAULT_KEYMAP)
