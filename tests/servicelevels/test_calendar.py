"""Business-hours arithmetic: properties (hypothesis), DST days and the parsing of opening hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from exporter.servicelevels.calendar import (
    CONTINUOUS,
    HORIZON_DAYS,
    BusinessCalendar,
    parse_day_hours,
)

ZONES = ("Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC")
# 2026-01-01 .. 2027-12-31: both DST seasons twice over.
T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
T1 = datetime(2028, 1, 1, tzinfo=UTC).timestamp()
instants = st.floats(min_value=T0, max_value=T1, allow_nan=False)
# Opening hours away from 00:00-04:00, where the zones above change their clocks: there the
# wall clock never jumps, so "open" is simply "the local clock reads a time in a range".
day_hours = st.lists(st.integers(min_value=4 * 60, max_value=1440), max_size=6, unique=True).map(
    lambda marks: tuple(zip(sorted(marks)[::2], sorted(marks)[1::2], strict=False))
)


# Any opening hours, DST gaps and folds included: for the properties that need no reference.
any_day_hours = st.lists(st.integers(min_value=0, max_value=1440), max_size=6, unique=True).map(
    lambda marks: tuple(zip(sorted(marks)[::2], sorted(marks)[1::2], strict=False))
)
# Instants near the 2026 clock changes of London and New York.
dst_instants = st.sampled_from(
    [datetime(2026, m, d, tzinfo=UTC).timestamp() for m, d in ((3, 8), (3, 29), (10, 25), (11, 1))]
).flatmap(lambda t: st.floats(min_value=t - 86400, max_value=t + 2 * 86400))


@st.composite
def calendars(
    draw: st.DrawFn, zones: tuple[str, ...] = ZONES, hours: Any = day_hours
) -> BusinessCalendar:
    week = tuple(draw(hours) for _ in range(7))
    assume(any(week))
    holidays = draw(st.frozensets(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=20))
    return BusinessCalendar(draw(st.sampled_from(zones)), week, holidays)


def wall_clock_open(cal: BusinessCalendar, t: float) -> bool:
    """Reference: open when the local clock reads a time inside one of the day's ranges."""
    local = datetime.fromtimestamp(t, ZoneInfo(cal.timezone))
    if local.date() in cal.holidays:
        return False
    minute = local.hour * 60 + local.minute
    return any(a <= minute < b for a, b in cal.hours[local.weekday()])


def reference_elapsed(cal: BusinessCalendar, a: float, b: float) -> float:
    """Open seconds in [a, b) by stepping whole minutes (every zone above shifts by minutes)."""
    total = 0.0
    t = a
    while t < b:
        step_end = min(b, (t // 60 + 1) * 60)
        if wall_clock_open(cal, t):
            total += step_end - t
        t = step_end
    return total


@settings(max_examples=60, deadline=None)
@given(calendars(), instants | dst_instants, st.floats(min_value=0, max_value=3 * 86400))
def test_elapsed_matches_a_minute_by_minute_reference(
    cal: BusinessCalendar, a: float, span: float
) -> None:
    assert cal.elapsed(a, a + span) == pytest.approx(reference_elapsed(cal, a, a + span), abs=1e-3)


@settings(max_examples=200, deadline=None)
@given(
    calendars(hours=any_day_hours),
    instants | dst_instants,
    st.floats(min_value=0, max_value=30 * 86400),
    st.floats(0, 86400),
)
def test_elapsed_is_monotonic_in_now(cal: BusinessCalendar, a: float, n1: float, dn: float) -> None:
    assert cal.elapsed(a, a + n1) <= cal.elapsed(a, a + n1 + dn) + 1e-6
    assert cal.elapsed(a, a + n1 + dn) - cal.elapsed(a, a + n1) <= dn + 1e-6


@settings(max_examples=200, deadline=None)
@given(
    calendars(hours=any_day_hours),
    instants | dst_instants,
    st.floats(min_value=0, max_value=5 * 86400),
)
def test_deadline_is_the_inverse_of_elapsed(cal: BusinessCalendar, a: float, n: float) -> None:
    due = cal.deadline(a, n)
    if due == float("inf"):
        # Never within the calendar's horizon (a calendar open a minute a week, say): only when
        # the whole horizon holds less than n open seconds.
        assert cal.elapsed(a, a + HORIZON_DAYS * 86400) < n
        return
    assert due >= a
    assert cal.elapsed(a, due) == pytest.approx(n, abs=1e-3)
    # ...and the earliest such instant: a second before it, less than n had passed.
    if n > 1:
        assert cal.elapsed(a, due - 1) < n


@settings(max_examples=200, deadline=None)
@given(instants, st.floats(min_value=0, max_value=1e7), st.floats(min_value=0, max_value=1e7))
def test_a_continuous_clock_is_wall_time(a: float, span: float, n: float) -> None:
    # Unix times near 1.8e9 carry about 1e-6 s of float precision.
    assert CONTINUOUS.elapsed(a, a + span) == pytest.approx(span, abs=1e-5)
    assert CONTINUOUS.elapsed(a + span, a) == 0
    assert CONTINUOUS.deadline(a, n) == a + n
    always = BusinessCalendar("Europe/London", ALL_DAY)
    span = min(span, 40 * 86400)
    assert always.elapsed(a, a + span) == pytest.approx(span, abs=1e-5)


@settings(max_examples=100, deadline=None)
@given(calendars(), instants, st.floats(min_value=1, max_value=86400))
# A one-minute window opening a second before the stretch ends: open for that last second.
@example(
    BusinessCalendar("Europe/London", (((513, 514),), (), (), (), (), (), ())),
    1775373781.0,
    86400.0,
)
def test_no_growth_while_closed(cal: BusinessCalendar, a: float, span: float) -> None:
    b = a + span
    # Elapsed grows exactly by the open time of [b, b + 600): zero for a closed stretch. Every
    # zone above is offset from UTC by whole minutes, so "open" is constant within each UTC
    # minute: checking b and every minute boundary after it covers the whole stretch.
    marks = [b, *range(int(b // 60 + 1) * 60, int(b + 600), 60)]
    closed = not any(wall_clock_open(cal, t) for t in marks if t < b + 600)
    grew = cal.elapsed(a, b + 600) - cal.elapsed(a, b)
    if closed:
        assert grew == pytest.approx(0, abs=1e-6)


def _at(zone: str, *args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).timestamp()  # type: ignore[arg-type,misc]


ALL_DAY = tuple(((0, 1440),) for _ in range(7))
OFFICE = tuple((((8 * 60, 18 * 60),) if d < 5 else ()) for d in range(7))


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        ("Europe/London", date(2026, 3, 29), date(2026, 10, 25)),
        ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
def test_dst_days(zone: str, spring: date, autumn: date) -> None:
    cal = BusinessCalendar(zone, ALL_DAY)
    for day, hours in ((spring, 23), (autumn, 25), (spring + timedelta(days=7), 24)):
        start = _at(zone, day.year, day.month, day.day)
        nxt = day + timedelta(days=1)
        end = _at(zone, nxt.year, nxt.month, nxt.day)
        assert cal.elapsed(start, end) == hours * 3600
    office = BusinessCalendar(zone, tuple(((8 * 60, 18 * 60),) for _ in range(7)))
    for day in (spring, autumn):
        # 08:00-18:00 is ten real hours on the days the clocks change, opening at 08:00 local.
        opens = _at(zone, day.year, day.month, day.day, 8)
        assert office.elapsed(opens - 7200, opens + 86400) == 36000
        assert office.deadline(opens - 3600, 1) == opens + 1


def test_spring_forward_gap_and_fall_back_fold_policy() -> None:
    zone = "Europe/London"  # 2026-03-29 01:00 GMT -> 02:00 BST; 2026-10-25 02:00 BST -> 01:00 GMT
    gap = BusinessCalendar(zone, tuple(((90, 180),) for _ in range(7)))  # 01:30-03:00
    # 01:30 does not exist that day: the first instant reading 01:30 or later is 02:00 BST.
    jump = _at(zone, 2026, 3, 29, 2)
    assert gap.day_intervals(date(2026, 3, 29)) == [(jump, _at(zone, 2026, 3, 29, 3))]
    fold = BusinessCalendar(zone, tuple(((60, 90),) for _ in range(7)))  # 01:00-01:30
    # Happens twice: the first occurrence only (the office does not reopen when clocks go back).
    first = _at(zone, 2026, 10, 25, 1)
    assert fold.day_intervals(date(2026, 10, 25)) == [(first, first + 1800)]


def test_holidays_and_weekends_are_closed() -> None:
    cal = BusinessCalendar("Europe/London", OFFICE, frozenset({date(2026, 12, 25)}))
    thu = _at("Europe/London", 2026, 12, 24, 17)  # Thursday 17:00, one hour before closing
    # Thursday 1h, Friday 25th holiday, weekend closed, Monday 08:00 + 1h.
    assert cal.deadline(thu, 2 * 3600) == _at("Europe/London", 2026, 12, 28, 9)
    assert cal.elapsed(thu, _at("Europe/London", 2026, 12, 28, 8)) == 3600


def test_a_deadline_beyond_the_horizon_is_never() -> None:
    tiny = BusinessCalendar("UTC", (((0, 1),), (), (), (), (), (), ()))  # one minute a week
    assert tiny.deadline(T0, 600 * 86400) == float("inf")
    assert tiny.deadline(T0, 120) < float("inf")


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("08:00-18:00", ((480, 1080),)),
        ("13:00-17:00, 08:00-12:00", ((480, 720), (780, 1020))),
        ("00:00-24:00", ((0, 1440),)),
        ("", ()),
    ],
)
def test_parse_day_hours(text: str, hours: tuple[tuple[int, int], ...]) -> None:
    assert parse_day_hours(text) == hours


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("08:00-25:00", "25:00"),
        ("8-18", "not a range"),
        ("18:00-08:00", "ends before it starts"),
        ("08:00-12:00,11:00-13:00", "overlap"),
        ("24:00-24:00", "24:00"),
        ("08:60-09:00", "08:60"),
    ],
)
def test_parse_day_hours_rejects(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_day_hours(text)


def test_unknown_timezone_is_rejected() -> None:
    with pytest.raises(Exception, match="Mars"):
        BusinessCalendar("Mars/Olympus_Mons", ALL_DAY)


@settings(max_examples=100, deadline=None)
@given(
    calendars(hours=any_day_hours),
    st.lists(instants | dst_instants, max_size=30),
    st.floats(min_value=0, max_value=5 * 86400),
)
def test_batch_deadlines_equal_one_by_one(
    cal: BusinessCalendar, starts: list[float], n: float
) -> None:
    starts.sort()
    batch = list(cal.deadlines(starts, n))
    fresh = BusinessCalendar(cal.timezone, cal.hours, cal.holidays)
    assert batch == pytest.approx([fresh.deadline(t, n) for t in starts], abs=1e-6)


def test_the_intervals_kept_are_bounded_whatever_the_instants() -> None:
    cal = BusinessCalendar("Europe/London", OFFICE)
    far_past, far_future = -1e10, 1e11  # year 1653 and year 5138
    assert cal.elapsed(far_past, T0) == cal.elapsed(T0 - HORIZON_DAYS * 86400, T0)
    assert cal.deadline(far_future, 3600) > far_future
    cal.elapsed(T0 - 86400, T0)
    for timeline in cal._cache:
        # At most two horizons of dates, each with one office range.
        assert len(timeline.starts) <= 2 * HORIZON_DAYS + 10


def test_breach_times_clamp_stamps_far_from_now() -> None:
    from array import array

    from exporter.servicelevels.policy import ServiceLevel, breach_times

    level = ServiceLevel(3600.0, 600.0, BusinessCalendar("UTC", OFFICE))
    times = breach_times(array("d", [-1e10, T0, 1e11]), level, T0)
    assert list(times) == sorted(times) and all(T0 - HORIZON_DAYS * 86400 < t < T0 + 10 * 86400 for t in times)  # fmt: skip
