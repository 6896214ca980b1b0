"""Desk presentation rules: channel icons, ages, SLA countdowns. Pure text building, never markup."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text

from agentdesk.domain.clock import from_iso
from agentdesk.domain.text import safe_text
from agentdesk.store.cache import TransferTarget

CHANNEL_ICON = {"email": "✉", "phone": "☎", "chat": "❝", "sms": "✆", "whatsapp": "◍"}
CHANNEL_NAME = {"email": "Email", "phone": "Phone", "chat": "Chat", "sms": "SMS", "whatsapp": "WhatsApp"}
PRIORITY_STYLE = {"urgent": "bold red", "high": "yellow", "normal": "", "low": "dim"}
STATUS_ICON = {"queued": "◷ queued", "sending": "↻ sending", "sent": "✓ sent", "delivered": "✓✓ delivered", "failed": "✗ failed"}


def channel_label(channel: str) -> str:
    return f"{CHANNEL_ICON.get(channel, '•')} {CHANNEL_NAME.get(channel, channel)}"


def span(seconds: float) -> str:
    """A compact duration: 45s, 12m, 3h, 2d."""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def age(iso: str | None, now: datetime) -> str:
    when = from_iso(iso)
    return span((now - when).total_seconds()) if when else ""


def sla(iso: str | None, now: datetime) -> Text:
    """SLA countdown coloured by urgency; breached ones in red, counting up."""
    due = from_iso(iso)
    if due is None:
        return Text("")
    left = (due - now).total_seconds()
    if left < 0:
        return Text(f"SLA -{span(left)}", style="bold red")
    style = "yellow" if left < 3600 else "green"
    return Text(f"SLA {span(left)}", style=style)


def customer_name(name: str | None, limit: int | None = None) -> Text:
    return safe_text(name or "Unknown customer", "bold", one_line=True, limit=limit)


STATUS_STYLE = {"open": "green", "pending": "yellow", "snoozed": "cyan", "closed": "dim"}


def conversation_facts(conversation: dict[str, Any], me: str, tags: list[str]) -> Text:
    """The open conversation's state in one line: status, priority, assignee, team, tags."""
    status = conversation.get("status") or "open"
    parts = [Text(status, style=STATUS_STYLE.get(status, ""))]
    until = from_iso(conversation.get("snooze_until"))
    if status == "snoozed" and until:
        parts[0].append(f" until {until.astimezone():%a %d %b %H:%M}")
    priority = conversation.get("priority") or "normal"
    parts.append(Text(f"{priority} priority", style=PRIORITY_STYLE.get(priority, "")))
    assignee = conversation.get("assignee_id")
    if assignee == me:
        parts.append(Text("assigned to you", style="bold"))
    elif assignee:
        parts.append(Text("assigned to ") + safe_text(conversation.get("assignee_name") or "someone", "bold", one_line=True, limit=40))
    else:
        parts.append(Text("unassigned", style="cyan"))
    parts.append(safe_text(conversation.get("team_name") or "?", one_line=True, limit=30))
    if tags:
        parts.append(safe_text(" ".join(f"#{tag}" for tag in tags), "magenta", one_line=True, limit=60))
    return dim_joined(parts)


def dim_joined(parts: list[Text], separator: str = " · ") -> Text:
    """Parts between dim separators. (Text(" · ", style="dim").join(parts) dims the whole line: the joined Text
    takes the separator's style as its base.)"""
    line = Text()
    for index, part in enumerate(parts):
        if index:
            line.append(separator, style="dim")
        line.append_text(part)
    return line


def target_label(target: TransferTarget) -> Text:
    """A transfer target as the picker and the palette show it; the names are untrusted."""
    team = safe_text(target.team_name, one_line=True, limit=40)
    if target.agent_id is None:
        return Text.assemble("team ", team)
    return Text.assemble(safe_text(target.agent_name, "bold", one_line=True, limit=40), " · ", team)
