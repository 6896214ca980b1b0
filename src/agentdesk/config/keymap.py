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
    description: str
    show: bool = True  # listed in the footer


DEFAULT_KEYMAP: tuple[KeySpec, ...] = (
    KeySpec("app.quit", "q", "quit", "Quit"),
    KeySpec("queue.down", "j,down", "queue_move(1)", "Next", show=False),
    KeySpec("queue.up", "k,up", "queue_move(-1)", "Previous", show=False),
    KeySpec("queue.open", "enter", "open_conversation", "Open"),
    KeySpec("reply.focus", "r", "focus_reply", "Reply"),
    KeySpec("reply.send", "ctrl+s,ctrl+enter", "send_reply", "Send"),
    KeySpec("queue.focus", "escape", "focus_queue", "Queue", show=False),
)

BINDING_IDS: frozenset[str] = frozenset(spec.id for spec in DEFAULT_KEYMAP)
