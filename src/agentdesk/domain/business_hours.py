"""SLA arithmetic in business hours (DESIGN §4: a conversation's SLA due times).

Opening hours are wall-clock times in the calendar's zone, so "09:00-17:00" is eight hours on the days
the clocks change too, while a 00:00-24:00 day lasts 23 or 25 hours. Instants in and out are aware
datetimes; all subtraction happens in UTC, because Python subtracts two datetimes sharing one tzinfo by
wall clock and would get DST days wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# As a *closing* time, 00:00 means 24:00, midnight at the end of the day: `time` cannot hold 24:00,
# and a day cannot close at its own start.
END_OF_DAY = time(0)

_ONE_DAY = timedelta(days=1)
_ONE_MINUTE = timedelta(minutes=1)
_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _office_hours() -> dict[int, tuple[time, time]]:
    return {day: (time(9), time(17)) for day in range(5)}


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValueError(f"timezone: unknown time zone {name!r}; expected an IANA name such as 'Europe/London'") from None


@dataclass(frozen=True)
class Calendar:
    """When the SLA clock runs: per-weekday (0=Mon) open/close wall-clock times, minus holidays.

    A weekday missing from `hours` is closed. One span per day; a shift past midnight is two spans
    (e.g. Mon 22:00-24:00 and Tue 00:00-06:00).
    """

    timezone: str = "UTC"
    hours: dict[int, tuple[time, time]] = field(default_factory=_office_hours)
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        _zone(self.timezone)
        object.__setattr__(self, "hours", {day: _checked_span(day, span) for day, span in dict(self.hours).items()})
        object.__setattr__(self, "holidays", frozenset(self.holidays))

    def __hash__(self) -> int:  # the generated hash would choke on the dict
        return hash((self.timezone, tuple(sorted(self.hours.items())), self.holidays))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo caches instances by key

    @classmethod
    def always(cls, timezone: str = "UTC") -> Calendar:
        """24x7: every day 00:00-24:00, no holidays."""
        return cls(timezone, {day: (time(0), END_OF_DAY) for day in range(7)})

    @classmethod
    def from_config(cls, timezone: str, hours: Mapping[str, str], holidays: Iterable[str | date] = ()) -> Calendar:
        """From the TOML shape `hours = { mon = "09:00-17:00", sat = "10:00-14:00" }`, `holidays = ["2026-12-25"]`.

        Raises ValueError naming the offending key, what was expected and what was found.
        """
        _zone(timezone)
        parsed: dict[int, tuple[time, time]] = {}
        for key, value in hours.items():
            name = str(key).lower()
            if name not in DAY_NAMES:
                raise ValueError(f"hours.{key}: unknown day; expected one of {', '.join(DAY_NAMES)}")
            parsed[DAY_NAMES.index(name)] = _parse_span(f"hours.{key}", value)
        if not parsed:
            raise ValueError(f"hours: no open day given; expected at least one of {', '.join(DAY_NAMES)}")
        days = frozenset(_parse_holiday(f"holidays[{i}]", value) for i, value in enumerate(holidays))
        return cls(timezone, parsed, days)


def _checked_span(day: object, span: object) -> tuple[time, time]:
    if not isinstance(day, int) or not 0 <= day <= 6:
        raise ValueError(f"hours[{day!r}]: expected a weekday number 0 (Mon) to 6 (Sun)")
    try:
        opens, closes = span  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"hours[{day}]: expected an (open, close) pair of times, got {span!r}") from None
    if not (isinstance(opens, time) and isinstance(closes, time)) or opens.tzinfo or closes.tzinfo:
        raise ValueError(f"hours[{day}]: expected naive wall-clock times, got {span!r}")
    if closes != END_OF_DAY and opens >= closes:
        raise ValueError(f"hours[{day}]: opening {opens:%H:%M} is not before closing {closes:%H:%M}")
    return opens, closes


def _parse_span(where: str, value: object) -> tuple[time, time]:
    match = _SPAN.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{where}: expected 'HH:MM-HH:MM' such as '09:00-17:00', got {value!r}")
    oh, om, ch, cm = (int(part) for part in match.groups())
    if oh > 23 or om > 59 or cm > 59 or ch > 24 or (ch == 24 and cm):
        raise ValueError(f"{where}: expected times from 00:00 to 24:00, got {value!r}")
    opens, closes = time(oh, om), time(ch % 24, cm)
    if closes != END_OF_DAY and opens >= closes:
        raise ValueError(f"{where}: opening {opens:%H:%M} is not before closing {closes:%H:%M} (got {value!r})")
    return opens, closes


def _parse_holiday(where: str, value: object) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):  # TOML's bare dates arrive parsed
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{where}: expected a date 'YYYY-MM-DD' such as '2026-12-25', got {value!r}")


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _window(cal: Calendar, zone: ZoneInfo, day: date) -> tuple[datetime, datetime] | None:
    """The UTC instants the calendar opens and closes on local date `day`; None when closed."""
    span = cal.hours.get(day.weekday())
    if span is None or day in cal.holidays:
        return None
    opens, closes = span
    start = datetime.combine(day, opens, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + _ONE_DAY if closes == END_OF_DAY else day, closes, tzinfo=zone).astimezone(UTC)
    return (start, end) if end > start else None  # a span wholly inside a DST gap is empty


def _windows(cal: Calendar, first_day: date) -> Iterator[tuple[datetime, datetime]]:
    """Open windows from `first_day` on; closed days and holidays cost a lookup, no zone arithmetic."""
    zone, day = cal.zone, first_day
    while True:
        window = _window(cal, zone, day)
        if window is not None:
            yield window
        day += _ONE_DAY


def _first_day(cal: Calendar, instant: datetime) -> date:
    # One day early: cheap insurance against zones whose transitions fall at midnight.
    return instant.astimezone(cal.zone).date() - _ONE_DAY


def add_business_time(cal: Calendar, start: datetime, minutes: float) -> datetime:
    """The UTC instant at which `minutes` of open time have elapsed after `start`.

    Outside hours the clock starts at the next opening, so `minutes=0` gives that opening (or `start`
    itself when open). Holidays and closed days are skipped; open hours follow the local wall clock.
    """
    begin = _utc(start, "start")
    if not isinstance(minutes, int | float) or not math.isfinite(minutes) or minutes < 0:
        raise ValueError(f"minutes must be a finite number >= 0, got {minutes!r}")
    if not cal.hours:
        raise ValueError("the calendar has no open hours, so business time never passes")
    remaining = timedelta(minutes=minutes)
    if remaining > datetime.max.replace(tzinfo=UTC) - begin:
        raise ValueError(f"{minutes} minutes after {begin.isoformat()} is beyond the year 9999")
    try:
        # Terminates: some weekday is open and holidays are finite, so open windows keep coming.
        for opens, closes in _windows(cal, _first_day(cal, begin)):
            if closes <= begin:
                continue
            opens = max(opens, begin)
            if remaining <= closes - opens:
                return opens + remaining
            remaining -= closes - opens
    except OverflowError:
        raise ValueError(f"{minutes} business minutes after {begin.isoformat()} is beyond the year 9999") from None
    raise AssertionError("unreachable")  # pragma: no cover


def business_minutes_between(cal: Calendar, start: datetime, end: datetime) -> float:
    """Open minutes in [start, end); 0 when end <= start."""
    begin, finish = _utc(start, "start"), _utc(end, "end")
    if finish <= begin:
        return 0.0
    total = timedelta()
    zone, day, last = cal.zone, _first_day(cal, begin), finish.astimezone(cal.zone).date()
    while day <= last:
        window = _window(cal, zone, day)
        if window is not None:
            overlap = min(window[1], finish) - max(window[0], begin)
            if overlap > timedelta():
                total += overlap
        day += _ONE_DAY
    return total / _ONE_MINUTE
