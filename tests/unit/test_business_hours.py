from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentdesk.domain.business_hours import (
    END_OF_DAY,
    Calendar,
    add_business_time,
    business_minutes_between,
)

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
OFFICE_NY = Calendar("America/New_York")  # Mon-Fri 09:00-17:00
EVERY_DAY_NY = Calendar("America/New_York", {d: (time(9), time(17)) for d in range(7)})
MIDNIGHT_TO_MIDNIGHT_NY = Calendar("America/New_York", {d: (time(0), END_OF_DAY) for d in range(7)})

# 2026: US clocks spring forward on Sun 8 March and fall back on Sun 1 November;
# UK clocks on Sun 29 March and Sun 25 October.
SPRING_NY, FALL_NY = date(2026, 3, 8), date(2026, 11, 1)
SPRING_UK, FALL_UK = date(2026, 3, 29), date(2026, 10, 25)


def at(zone, *args):
    return datetime(*args, tzinfo=zone)


def local(value, zone=NY):
    return value.astimezone(zone).replace(tzinfo=None)


def day_bounds(day, zone):
    return at(zone, day.year, day.month, day.day), at(zone, *(day + timedelta(days=1)).timetuple()[:3])


# ---------------------------------------------------------------- Calendar


def test_default_calendar_is_weekday_office_hours_in_utc():
    cal = Calendar()
    assert cal.timezone == "UTC"
    assert cal.hours == {d: (time(9), time(17)) for d in range(5)}
    assert cal.holidays == frozenset()


def test_always_is_every_day_all_day():
    cal = Calendar.always("Europe/London")
    assert cal.hours == {d: (time(0), END_OF_DAY) for d in range(7)}
    assert cal.timezone == "Europe/London"


def test_calendar_is_hashable_and_compares_by_value():
    a = Calendar("Europe/London", {0: (time(9), time(17))}, frozenset({date(2026, 12, 25)}))
    b = Calendar("Europe/London", {0: (time(9), time(17))}, {date(2026, 12, 25)})
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1


def test_calendar_copies_its_hours():
    hours = {0: (time(9), time(17))}
    cal = Calendar("UTC", hours)
    hours[1] = (time(9), time(17))
    assert 1 not in cal.hours


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone: unknown time zone 'Mars/Olympus_Mons'"),
        ({"timezone": "../etc/passwd"}, "unknown time zone"),
        ({"hours": {7: (time(9), time(17))}}, r"hours\[7\]: expected a weekday number"),
        ({"hours": {"mon": (time(9), time(17))}}, "expected a weekday number"),
        ({"hours": {0: (time(17), time(9))}}, r"hours\[0\]: opening 17:00 is not before closing 09:00"),
        ({"hours": {0: (time(9), time(9))}}, "not before closing"),
        ({"hours": {0: (time(9),)}}, "expected an .open, close. pair"),
        ({"hours": {0: ("09:00", "17:00")}}, "expected naive wall-clock times"),
        ({"hours": {0: (time(9, tzinfo=UTC), time(17))}}, "expected naive wall-clock times"),
    ],
)
def test_calendar_rejects_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Calendar(**kwargs)


# ---------------------------------------------------------------- from_config


def test_from_config_parses_the_toml_shape():
    cal = Calendar.from_config(
        "Europe/London",
        {"mon": "09:00-17:00", "tue": "09:00-17:00", "Sat": "10:00-14:00", "sun": "00:00-24:00", "fri": "8:30-24:00"},
        ["2026-12-25", date(2026, 12, 28)],  # TOML bare dates arrive as `date`
    )
    assert cal.timezone == "Europe/London"
    assert cal.hours == {
        0: (time(9), time(17)),
        1: (time(9), time(17)),
        4: (time(8, 30), END_OF_DAY),
        5: (time(10), time(14)),
        6: (time(0), END_OF_DAY),
    }
    assert cal.holidays == {date(2026, 12, 25), date(2026, 12, 28)}


def test_from_config_holidays_are_optional():
    assert Calendar.from_config("UTC", {"mon": "09:00-17:00"}).holidays == frozenset()


@pytest.mark.parametrize(
    ("timezone", "hours", "holidays", "message"),
    [
        ("Mars/Base", {"mon": "09:00-17:00"}, [], "timezone: unknown time zone 'Mars/Base'; expected an IANA name"),
        ("", {"mon": "09:00-17:00"}, [], "timezone: unknown time zone ''"),
        ("UTC", {"funday": "09:00-17:00"}, [], "hours.funday: unknown day; expected one of mon, tue, wed, thu, fri, sat, sun"),
        ("UTC", {"mon": "9-5"}, [], "hours.mon: expected 'HH:MM-HH:MM' such as '09:00-17:00', got '9-5'"),
        ("UTC", {"tue": "09:00 to 17:00"}, [], "hours.tue: expected 'HH:MM-HH:MM'"),
        ("UTC", {"wed": 9}, [], "hours.wed: expected 'HH:MM-HH:MM' such as '09:00-17:00', got 9"),
        ("UTC", {"thu": "09:00-24:30"}, [], "hours.thu: expected times from 00:00 to 24:00, got '09:00-24:30'"),
        ("UTC", {"thu": "24:00-24:00"}, [], "hours.thu: expected times from 00:00 to 24:00"),
        ("UTC", {"fri": "09:60-17:00"}, [], "hours.fri: expected times from 00:00 to 24:00"),
        ("UTC", {"sat": "14:00-10:00"}, [], "hours.sat: opening 14:00 is not before closing 10:00 .got '14:00-10:00'."),
        ("UTC", {"sun": "10:00-10:00"}, [], "hours.sun: opening 10:00 is not before closing 10:00"),
        ("UTC", {}, [], "hours: no open day given"),
        ("UTC", {"mon": "09:00-17:00"}, ["25/12/2026"], r"holidays\[0\]: expected a date 'YYYY-MM-DD' such as '2026-12-25', got '25/12/2026'"),
        ("UTC", {"mon": "09:00-17:00"}, ["2026-12-25", "2026-02-30"], r"holidays\[1\]: .* got '2026-02-30'"),
        ("UTC", {"mon": "09:00-17:00"}, [datetime(2026, 12, 25, tzinfo=UTC)], r"holidays\[0\]: expected a date"),
    ],
)
def test_from_config_errors_are_precise(timezone, hours, holidays, message):
    with pytest.raises(ValueError, match=message):
        Calendar.from_config(timezone, hours, holidays)


# ---------------------------------------------------------------- add_business_time


def test_within_one_day():
    start = at(NY, 2026, 3, 10, 10, 0)  # Tuesday
    assert local(add_business_time(OFFICE_NY, start, 90)) == datetime(2026, 3, 10, 11, 30)


def test_result_is_aware_utc():
    result = add_business_time(OFFICE_NY, at(NY, 2026, 3, 10, 10, 0), 1)
    assert result.tzinfo is UTC
    assert result == datetime(2026, 3, 10, 14, 1, tzinfo=UTC)


def test_weekend_is_skipped():
    start = at(NY, 2026, 3, 13, 16, 30)  # Friday
    assert local(add_business_time(OFFICE_NY, start, 60)) == datetime(2026, 3, 16, 9, 30)


def test_weekend_is_skipped_across_spring_forward():
    start = at(NY, 2026, 3, 6, 16, 30)  # Friday, EST; Monday is EDT
    result = add_business_time(OFFICE_NY, start, 60)
    assert local(result) == datetime(2026, 3, 9, 9, 30)
    assert result == datetime(2026, 3, 9, 13, 30, tzinfo=UTC)


def test_a_holiday_is_skipped():
    cal = Calendar("America/New_York", holidays=frozenset({date(2026, 12, 25)}))  # a Friday
    start = at(NY, 2026, 12, 24, 16, 0)
    assert local(add_business_time(cal, start, 120)) == datetime(2026, 12, 28, 10, 0)


def test_a_monday_holiday_extends_the_weekend():
    cal = Calendar("America/New_York", holidays=frozenset({date(2026, 5, 25)}))  # Memorial Day
    start = at(NY, 2026, 5, 22, 16, 0)  # Friday
    end = add_business_time(cal, start, 120)
    assert local(end) == datetime(2026, 5, 26, 10, 0)
    assert business_minutes_between(cal, start, end) == 120


def test_consecutive_holidays_and_a_closed_week():
    week = frozenset(date(2026, 12, 21) + timedelta(days=i) for i in range(5))
    cal = Calendar("Europe/London", holidays=week)
    start = at(LONDON, 2026, 12, 18, 16, 0)  # Friday before the shutdown
    assert local(add_business_time(cal, start, 90), LONDON) == datetime(2026, 12, 28, 9, 30)


def test_start_before_opening():
    start = at(NY, 2026, 3, 10, 7, 0)
    assert local(add_business_time(OFFICE_NY, start, 30)) == datetime(2026, 3, 10, 9, 30)


def test_start_after_closing():
    start = at(NY, 2026, 3, 10, 18, 0)
    assert local(add_business_time(OFFICE_NY, start, 30)) == datetime(2026, 3, 11, 9, 30)


def test_start_on_a_saturday():
    start = at(NY, 2026, 3, 14, 12, 0)
    assert local(add_business_time(OFFICE_NY, start, 30)) == datetime(2026, 3, 16, 9, 30)


def test_ending_exactly_at_closing_stays_on_that_day():
    start = at(NY, 2026, 3, 10, 16, 0)
    assert local(add_business_time(OFFICE_NY, start, 60)) == datetime(2026, 3, 10, 17, 0)
    assert local(add_business_time(OFFICE_NY, start, 60.5)) == datetime(2026, 3, 11, 9, 0, 30)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (datetime(2026, 3, 10, 11, 15), datetime(2026, 3, 10, 11, 15)),  # open: the start itself
        (datetime(2026, 3, 10, 7, 0), datetime(2026, 3, 10, 9, 0)),  # before opening
        (datetime(2026, 3, 10, 17, 0), datetime(2026, 3, 11, 9, 0)),  # at closing
        (datetime(2026, 3, 14, 12, 0), datetime(2026, 3, 16, 9, 0)),  # Saturday
    ],
)
def test_zero_minutes_is_when_the_clock_starts(start, expected):
    assert local(add_business_time(OFFICE_NY, start.replace(tzinfo=NY), 0)) == expected


def test_fractional_minutes():
    start = at(NY, 2026, 3, 10, 9, 0)
    assert local(add_business_time(OFFICE_NY, start, 0.25)) == datetime(2026, 3, 10, 9, 0, 15)


def test_start_in_another_zone_is_the_same_instant():
    start_utc = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)  # 10:00 in New York
    start_tokyo = start_utc.astimezone(ZoneInfo("Asia/Tokyo"))
    assert add_business_time(OFFICE_NY, start_tokyo, 45) == add_business_time(OFFICE_NY, start_utc, 45)


def test_a_long_span_is_whole_weeks():
    start = at(UTC, 2026, 1, 5, 9, 0)  # Monday
    end = add_business_time(Calendar(), start, 52 * 5 * 8 * 60)
    assert end == start + timedelta(weeks=51, days=4, hours=8)  # Friday 17:00 of the 52nd week


# ---------------------------------------------------------------- DST


@pytest.mark.parametrize("day", [SPRING_NY, FALL_NY, SPRING_NY + timedelta(days=1), FALL_NY + timedelta(days=1)])
def test_nine_to_five_is_eight_hours_on_dst_days(day):
    start, end = day_bounds(day, NY)
    assert business_minutes_between(EVERY_DAY_NY, start, end) == 480
    opening = at(NY, day.year, day.month, day.day, 9)
    assert local(add_business_time(EVERY_DAY_NY, opening, 480)) == datetime(day.year, day.month, day.day, 17)


def test_spring_forward_sunday_in_utc():
    # 09:00 EST on Saturday is 14:00Z; 09:00 EDT on Sunday is 13:00Z
    assert add_business_time(EVERY_DAY_NY, at(NY, 2026, 3, 7, 16, 0), 120) == datetime(2026, 3, 8, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cal", "zone", "day", "minutes"),
    [
        (MIDNIGHT_TO_MIDNIGHT_NY, NY, SPRING_NY, 23 * 60),
        (MIDNIGHT_TO_MIDNIGHT_NY, NY, FALL_NY, 25 * 60),
        (MIDNIGHT_TO_MIDNIGHT_NY, NY, date(2026, 3, 9), 24 * 60),
        (Calendar.always("Europe/London"), LONDON, SPRING_UK, 23 * 60),
        (Calendar.always("Europe/London"), LONDON, FALL_UK, 25 * 60),
        (Calendar.always("Australia/Lord_Howe"), ZoneInfo("Australia/Lord_Howe"), date(2026, 4, 5), 24.5 * 60),
    ],
)
def test_a_whole_day_lasts_23_or_25_hours_on_dst_days(cal, zone, day, minutes):
    start, end = day_bounds(day, zone)
    assert business_minutes_between(cal, start, end) == minutes
    assert add_business_time(cal, start, minutes) == end.astimezone(UTC)


def test_london_office_across_both_changes():
    cal = Calendar("Europe/London")
    friday = at(LONDON, 2026, 3, 27, 16, 0)  # GMT; Monday is BST
    assert add_business_time(cal, friday, 120) == datetime(2026, 3, 30, 9, 0, tzinfo=UTC)  # 10:00 BST
    friday = at(LONDON, 2026, 10, 23, 16, 0)  # BST; Monday is GMT
    assert add_business_time(cal, friday, 120) == datetime(2026, 10, 26, 10, 0, tzinfo=UTC)  # 10:00 GMT


def test_opening_inside_the_dst_gap():
    # 02:00-03:30 on the spring-forward Sunday: 02:00-03:00 never happens, so only 03:00-03:30 EDT is open
    cal = Calendar("America/New_York", {6: (time(2), time(3, 30))})
    assert business_minutes_between(cal, *day_bounds(SPRING_NY, NY)) == 30
    assert business_minutes_between(cal, *day_bounds(date(2026, 3, 15), NY)) == 90


def test_hours_spanning_the_change_follow_the_wall_clock():
    cal = Calendar("America/New_York", {6: (time(1), time(3, 30))})
    assert business_minutes_between(cal, *day_bounds(date(2026, 3, 15), NY)) == 150
    assert business_minutes_between(cal, *day_bounds(SPRING_NY, NY)) == 90  # 02:00-03:00 skipped
    assert business_minutes_between(cal, *day_bounds(FALL_NY, NY)) == 210  # 01:00-02:00 happens twice


# ---------------------------------------------------------------- 24x7


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Europe/London"])
@pytest.mark.parametrize("minutes", [0, 1, 59.5, 1440, 10_000, 100_000])
def test_always_is_plain_timedelta_addition(zone, minutes):
    start = datetime(2026, 3, 7, 22, 17, tzinfo=UTC)  # straddles the US spring-forward
    assert add_business_time(Calendar.always(zone), start, minutes) == start + timedelta(minutes=minutes)


@settings(deadline=None)
@given(
    start=st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)),
    minutes=st.floats(0, 200_000, allow_nan=False),
    zone=st.sampled_from(["UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe"]),
)
def test_always_is_plain_timedelta_addition_property(start, minutes, zone):
    assert add_business_time(Calendar.always(zone), start, minutes) == start + timedelta(minutes=minutes)


# ---------------------------------------------------------------- business_minutes_between


def test_minutes_between_basic():
    assert business_minutes_between(OFFICE_NY, at(NY, 2026, 3, 10, 8, 0), at(NY, 2026, 3, 10, 10, 30)) == 90
    assert business_minutes_between(OFFICE_NY, at(NY, 2026, 3, 13, 16, 0), at(NY, 2026, 3, 16, 10, 0)) == 120
    assert business_minutes_between(OFFICE_NY, at(NY, 2026, 3, 9), at(NY, 2026, 3, 16)) == 5 * 480


def test_minutes_between_is_zero_when_end_is_not_after_start():
    t = at(NY, 2026, 3, 10, 10, 0)
    assert business_minutes_between(OFFICE_NY, t, t) == 0
    assert business_minutes_between(OFFICE_NY, t, t - timedelta(hours=3)) == 0


def test_minutes_between_with_no_open_hours_is_zero():
    assert business_minutes_between(Calendar("UTC", {}), at(UTC, 2026, 1, 1), at(UTC, 2026, 2, 1)) == 0


# ---------------------------------------------------------------- errors


def test_naive_datetimes_are_rejected():
    naive, aware = datetime(2026, 3, 10, 10, 0), at(UTC, 2026, 3, 10, 10, 0)
    with pytest.raises(ValueError, match="start must be a timezone-aware datetime"):
        add_business_time(OFFICE_NY, naive, 10)
    with pytest.raises(ValueError, match="start must be a timezone-aware"):
        business_minutes_between(OFFICE_NY, naive, aware)
    with pytest.raises(ValueError, match="end must be a timezone-aware"):
        business_minutes_between(OFFICE_NY, aware, naive)


@pytest.mark.parametrize("minutes", [-1, float("nan"), float("inf"), "60", None])
def test_bad_minutes_are_rejected(minutes):
    with pytest.raises(ValueError, match="minutes must be a finite number >= 0"):
        add_business_time(OFFICE_NY, at(UTC, 2026, 3, 10), minutes)


def test_a_calendar_without_open_hours_is_rejected():
    with pytest.raises(ValueError, match="no open hours"):
        add_business_time(Calendar("UTC", {}), at(UTC, 2026, 3, 10), 1)


def test_a_result_beyond_year_9999_is_a_value_error():
    with pytest.raises(ValueError, match="beyond the year 9999"):
        add_business_time(Calendar.always(), at(UTC, 9999, 12, 1), 60 * 24 * 60)
    with pytest.raises(ValueError, match="beyond the year 9999"):
        add_business_time(Calendar("UTC", {0: (time(9), time(10))}), at(UTC, 9999, 12, 1), 60 * 10)


# ---------------------------------------------------------------- round trip

CALENDARS = [
    Calendar(),
    OFFICE_NY,
    EVERY_DAY_NY,
    MIDNIGHT_TO_MIDNIGHT_NY,
    Calendar.always("Europe/London"),
    Calendar.from_config(
        "Europe/London",
        {"mon": "08:30-18:00", "wed": "00:00-24:00", "fri": "09:00-12:15", "sat": "10:00-14:00"},
        ["2026-12-25", "2026-12-28", "2027-01-01", "2030-06-03"],
    ),
    Calendar("America/New_York", {6: (time(1, 30), time(3, 30)), 2: (time(22), END_OF_DAY)}),  # DST gap/fold
    Calendar.from_config("Australia/Lord_Howe", {"sun": "01:00-03:00", "tue": "09:00-17:00"}),  # 30-min DST
]


@settings(deadline=None, max_examples=300)
@given(
    cal=st.sampled_from(CALENDARS),
    start=st.datetimes(datetime(2020, 1, 1), datetime(2031, 1, 1), timezones=st.just(UTC)),
    minutes=st.floats(0, 50_000, exclude_min=True, allow_nan=False),
)
@example(cal=MIDNIGHT_TO_MIDNIGHT_NY, start=datetime(2026, 3, 8, 6, 59, tzinfo=UTC), minutes=1.5)
@example(cal=MIDNIGHT_TO_MIDNIGHT_NY, start=datetime(2026, 11, 1, 5, 30, tzinfo=UTC), minutes=90)
@example(cal=CALENDARS[6], start=datetime(2026, 3, 8, 5, 0, tzinfo=UTC), minutes=31)
@example(cal=CALENDARS[6], start=datetime(2026, 11, 1, 5, 0, tzinfo=UTC), minutes=149)
def test_round_trip(cal, start, minutes):
    end = add_business_time(cal, start, minutes)
    assert end >= start
    assert end.tzinfo is UTC
    assert business_minutes_between(cal, start, end) == pytest.approx(minutes, abs=1e-6)


@settings(deadline=None)
@given(
    cal=st.sampled_from(CALENDARS),
    a=st.datetimes(datetime(2025, 1, 1), datetime(2028, 1, 1), timezones=st.just(UTC)),
    gaps=st.tuples(st.timedeltas(timedelta(0), timedelta(days=40)), st.timedeltas(timedelta(0), timedelta(days=40))),
)
def test_minutes_between_adds_up_and_never_exceeds_wall_time(cal, a, gaps):
    b = a + gaps[0]
    c = b + gaps[1]
    whole = business_minutes_between(cal, a, c)
    assert whole == pytest.approx(business_minutes_between(cal, a, b) + business_minutes_between(cal, b, c), abs=1e-6)
    assert 0 <= whole <= (c - a) / timedelta(minutes=1)
