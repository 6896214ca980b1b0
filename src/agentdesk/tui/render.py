"""Desk presentation rules: channel icons, ages, SLA countdowns. Pure text building, never markup."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from agentdesk.domain.clock import from_iso
from agentdesk.domain.text import safe_text

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
