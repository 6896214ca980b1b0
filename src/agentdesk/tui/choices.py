"""What the agent picks or types for a conversation action: snooze times, priorities, tags. Pure code."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date, datetime, time, timedelta
from typing import Any

PRIORITIES = ("low", "normal", "high", "urgent")
def reply_channels(customer_channels: list[str], conversation_channel: str) -> list[str]:
    """Where a written reply can go: the customer's channels, but a call is answered by SMS to the same
    number, and a chat reply reaches only the visitor of the chat being answered."""
    wanted = customer_channels or [conversation_channel]
    found = ["sms" if c == "phone" else c for c in wanted if c != "chat" or conversation_channel == "chat"]
    return list(dict.fromkeys(found))


DISPOSITIONS = ("resolved", "follow-up", "no answer", "voicemail", "callback requested", "wrong number", "escalated")

_IN = re.compile(r"(?:in\s+)?(\d+(?:\.\d+)?)\s*(m|mins?|minutes?|h|hrs?|hours?|d|days?)?", re.IGNORECASE)
_AT = "%Y-%m-%d %H:%M"
SNOOZE_HINT = "in 3 hours, 90m, 2d, or a local time as YYYY-MM-DD HH:MM"


def _local(day: date, hour: int = 9) -> datetime:
    """A wall-clock time on `day` in the machine's time zone, as an aware datetime."""
    return datetime.combine(day, time(hour)).astimezone()


def snooze_presets(now: datetime) -> list[tuple[str, datetime]]:
    """(label, moment) for the snooze picker: in an hour, tomorrow 09:00 and next Monday 09:00, local time."""
    today = now.astimezone().date()
    tomorrow = today + timedelta(days=1)
    monday = today + timedelta(days=7 - today.weekday())  # after today, even on a Monday
    return [
        ("In 1 hour", now + timedelta(hours=1)),
        (f"Tomorrow 09:00 ({tomorrow:%a %d %b})", _local(tomorrow)),
        (f"Next Monday 09:00 ({monday:%d %b})", _local(monday)),
    ]


def parse_snooze(text: str, now: datetime) -> datetime:
    """'3h', 'in 90 minutes', '2d' (hours when no unit) or 'YYYY-MM-DD HH:MM' local; ValueError says why not."""
    text = text.strip()
    if match := _IN.fullmatch(text):
        amount, unit = float(match[1]), (match[2] or "h")[0].lower()
        try:
            until = now + timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})
        except OverflowError:
            raise ValueError(f"{text!r} is too far away.") from None
    else:
        try:
            until = datetime.strptime(text, _AT).astimezone()
        except ValueError:
            raise ValueError(f"Could not read {text!r}: write {SNOOZE_HINT}.") from None
    if until <= now:
        raise ValueError(f"{until.astimezone():{_AT}} has already passed; pick a time in the future.")
    return until


def parse_tag(text: str) -> tuple[str, str]:
    """('tag', name) to add, or ('untag', name) for '-name'; names as the server keeps them (lower case)."""
    kind, name = ("untag", text.strip()[1:]) if text.strip().startswith("-") else ("tag", text)
    name = name.strip().lower()
    if not 1 <= len(name) <= 50:
        raise ValueError("A tag has 1 to 50 characters.")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in name):
        raise ValueError("A tag cannot contain control or invisible characters.")
    return kind, name


def retagged(tags: list[str], kind: str, name: str) -> list[str]:
    """The tag list after adding (`tag`) or removing (`untag`) one name."""
    if kind == "tag":
        return tags if name in tags else [*tags, name]
    return [tag for tag in tags if tag != name]


def tags_of(conversation: dict[str, Any]) -> list[str]:
    """The conversation's tags from the cache's JSON text (anything unreadable counts as none)."""
    try:
        tags = json.loads(conversation.get("tags") or "[]")
    except ValueError:
        return []
    return [str(tag) for tag in tags] if isinstance(tags, list) else []
