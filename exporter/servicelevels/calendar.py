"""Clocks that service-level ages are measured on: continuous, or business hours in a time zone.

Pure arithmetic on Unix timestamps, no I/O and no clock of its own. A business calendar is a
weekly pattern of wall-clock opening hours in an IANA time zone, minus holidays (whole local
dates). As in zendesk/biz, every concrete open interval is built from a *local date plus a wall
time*, converted to UTC, and all arithmetic then runs on UTC intervals, so DST never shifts an
opening time:

- a wall time is the *first instant at which the local clock reads that time or later*;
- so a time in a spring-forward gap (01:30 on the day London jumps from 01:00 to 02:00) is the
  instant of the jump (02:00 BST): "01:00-03:00" is open one real hour that day, "08:00-18:00"
  ten hours as always;
- and a time that happens twice on a fall-back day is its first occurrence (``fold=0``): an
  office open "00:00-02:00" that day is open the three real hours between the two ends, and one
  closing at "01:30" closes at the first 01:30 (it does not reopen when the clock goes back).

Open time is counted in real (elapsed) seconds. ``elapsed(a, b)`` is the open time in
``[a, b)``; ``deadline(t, n)`` is the earliest instant at which ``n`` open seconds have passed
since ``t``, so ``elapsed(t, deadline(t, n)) == n``.
"""

from __future__ import annotations

import itertools
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY = 86400.0
# How far from the instants asked about the open intervals are built: an email older than
# this many days counts open time from this horizon only, and a deadline further ahead than
# this is "never" (a calendar open one minute a week would otherwise walk for ages).
HORIZON_DAYS = 3660
_RANGE = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")

# Opening hours of one weekday: (start, end) minutes after local midnight; end may be 1440.
DayHours = tuple[tuple[int, int], ...]


class Clock(Protocol):
    """How a service level measures time between two instants."""

    def elapsed(self, start: float, end: float) -> float:
        """Seconds of counted time in [start, end); 0 when end <= start."""
        ...

    def deadline(self, start: float, seconds: float) -> float:
        """The earliest instant by which `seconds` of counted time have passed since `start`."""
        ...


@dataclass(frozen=True, slots=True)
class ContinuousClock:
    """Every second counts: the default clock."""

    def elapsed(self, start: float, end: float) -> float:
        return max(0.0, end - start)

    def deadline(self, start: float, seconds: float) -> float:
        return start + seconds


CONTINUOUS = ContinuousClock()


def parse_day_hours(text: str) -> DayHours:
    """``"08:00-18:00"`` or ``"08:00-12:00,13:00-17:00"``; ``""`` means closed all day.

    Raises ValueError naming the problem (``"25:00"``, overlaps, an end before its start).
    """
    ranges: list[tuple[int, int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = _RANGE.fullmatch(part.replace(" ", ""))
        if match is None:
            raise ValueError(f"{part!r} is not a range like 08:00-18:00")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        for hour, minute, is_end in ((h1, m1, False), (h2, m2, True)):
            if minute > 59 or hour > 24 or (hour == 24 and (minute or not is_end)):
                raise ValueError(
                    f"{hour:02d}:{minute:02d} in {part!r} is not a time of day (00:00-24:00)"
                )
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise ValueError(
                f"{part!r} ends before it starts (a range cannot pass midnight: split it)"
            )
        ranges.append((start, end))
    ranges.sort()
    for (_, end), (start, _) in itertools.pairwise(ranges):
        if start < end:
            raise ValueError(f"ranges in {text!r} overlap")
    return tuple(ranges)


@dataclass(slots=True)
class _Timeline:
    """Open intervals (UTC) of a run of local dates, with the open time before each."""

    first: date
    last: date
    starts: array[float]
    ends: array[float]
    before: array[float]  # open seconds from the first interval's start to each start
    through: array[float]  # open seconds up to each end


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Weekly opening hours in a time zone, minus holidays; see the module docstring."""

    timezone: str
    hours: tuple[DayHours, ...]  # Monday first, seven entries
    holidays: frozenset[date] = frozenset()
    _cache: list[_Timeline] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.hours) != 7:
            raise ValueError("hours must have one entry per weekday")
        ZoneInfo(self.timezone)  # raises for an unknown zone

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # cached by zoneinfo itself

    def day_intervals(self, day: date) -> list[tuple[float, float]]:
        """The open intervals of one local date, as Unix times."""
        if day in self.holidays:
            return []
        zone = self.zone
        out = []
        for start, end in self.hours[day.weekday()]:
            begin = _instant(day, start, zone)
            finish = _instant(day, end, zone)
            if finish > begin:
                out.append((begin, finish))
        return out

    def _timeline(self, lo: float, hi: float) -> _Timeline:
        """A timeline covering the local dates of `lo` .. `hi` (clamped to the horizon)."""
        zone = self.zone
        first = _local_date(lo, zone)
        last = _local_date(hi, zone)
        if self._cache:
            cached = self._cache[0]
            if cached.first <= first and last <= cached.last:
                return cached
            first, last = min(first, cached.first), max(last, cached.last)
            # Keep the span bounded: never more than two horizons of dates.
            if (last - first).days > 2 * HORIZON_DAYS:
                first = last - timedelta(days=2 * HORIZON_DAYS)
        starts, ends, before, through = array("d"), array("d"), array("d"), array("d")
        total = 0.0
        previous_end = -float("inf")
        day = first - timedelta(days=1)  # a UTC instant may fall on the local date before
        while day <= last + timedelta(days=1):
            for begin, finish in self.day_intervals(day):
                begin = max(begin, previous_end)  # DST at midnight must not make them overlap
                if finish <= begin:
                    continue
                starts.append(begin)
                ends.append(finish)
                before.append(total)
                total += finish - begin
                through.append(total)
                previous_end = finish
            day += timedelta(days=1)
        timeline = _Timeline(first, last, starts, ends, before, through)
        self._cache[:] = [timeline]
        return timeline

    def _open_before(self, timeline: _Timeline, t: float) -> float:
        """Open seconds from the timeline's start to `t`."""
        i = bisect_right(timeline.starts, t) - 1
        if i < 0:
            return 0.0
        return timeline.before[i] + min(t, timeline.ends[i]) - timeline.starts[i]

    def elapsed(self, start: float, end: float) -> float:
        if end <= start:
            return 0.0
        start = max(start, end - HORIZON_DAYS * DAY)
        timeline = self._timeline(start, end)
        return self._open_before(timeline, end) - self._open_before(timeline, start)

    def deadline(self, start: float, seconds: float) -> float:
        if seconds <= 0:
            return start
        hi = start + max(7 * DAY, seconds * 4)
        while True:
            timeline = self._timeline(start, min(hi, start + HORIZON_DAYS * DAY))
            goal = self._open_before(timeline, start) + seconds
            i = bisect_left(timeline.through, goal)
            if i < len(timeline.through):
                # max: when `seconds` vanishes in the rounding of `goal`, the answer is `start`.
                return max(start, timeline.starts[i] + goal - timeline.before[i])
            if hi >= start + HORIZON_DAYS * DAY:
                return float("inf")
            hi = start + (hi - start) * 4

    def deadlines(self, starts: Sequence[float], seconds: float) -> array[float]:
        """`self.deadline(t, seconds)` for every t of the sorted `starts`, in one forward walk.

        Both the start's interval and the goal's interval only move forward, so the cost is one pass
        over the starts and the intervals they span instead of two bisections per start.
        """
        out = array("d")
        if not starts:
            return out
        span = min(max(7 * DAY, seconds * 4), HORIZON_DAYS * DAY)
        timeline = self._timeline(starts[0], starts[-1] + span)
        begins, ends, before, through = (
            timeline.starts,
            timeline.ends,
            timeline.before,
            timeline.through,
        )
        n = len(begins)
        i = j = 0
        previous_start, previous = float("nan"), 0.0
        for t in starts:
            if t != previous_start:
                previous_start = t
                while i + 1 < n and begins[i + 1] <= t:
                    i += 1
                done = before[i] + min(t, ends[i]) - begins[i] if n and begins[i] <= t else 0.0
                goal = done + seconds
                while j < n and through[j] < goal:
                    j += 1
                if j < n and seconds > 0:
                    previous = max(t, begins[j] + goal - before[j])
                else:  # past the timeline built here, or nothing to add: the general path
                    previous = self.deadline(t, seconds)
            out.append(previous)
        return out


def _instant(day: date, minute: int, zone: ZoneInfo) -> float:
    """Unix time of a wall-clock minute on a local date (1440 = the next midnight)."""
    if minute >= 1440:
        day, minute = day + timedelta(days=1), minute - 1440
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    first = wall.replace(tzinfo=zone).timestamp()  # fold=0: the first occurrence
    if datetime.fromtimestamp(first, zone).replace(tzinfo=None) == wall:
        return first
    # In a spring-forward gap: fold=0 lands the gap's length late. The jump itself lies
    # between the two readings; find the first second at which the clock reads >= wall.
    lo, hi = int(wall.replace(tzinfo=zone, fold=1).timestamp()), int(first)
    while lo < hi:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


def _local_date(t: float, zone: ZoneInfo) -> date:
    t = min(max(t, -2e9), 1e11)  # well within datetime's range (years 1906 to 5138)
    return datetime.fromtimestamp(t, UTC).astimezone(zone).date()
