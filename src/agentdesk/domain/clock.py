"""Time on the wire and in the cache: aware UTC datetimes, ISO-8601 strings with a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_iso(value: datetime | None) -> str | None:
    """Fixed-width ISO text (millisecond precision) so strings sort as times do."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat truncates to milliseconds as the old strftime did, in a third of its time (every change-log row)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


def from_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
