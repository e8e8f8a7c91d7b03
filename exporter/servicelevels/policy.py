"""Service levels: which target applies to a group, and when each waiting email breaches it.

Pure: no I/O, no clock of its own; `now` comes in as an argument. Two pieces, each used by the
aggregation pass (`exporter.aggregation.builder.SnapshotBuilder`):

- `ServiceLevelPolicy` maps an (email_type, work_type) group to its `ServiceLevel` by ordered
  rules (first full match wins, else the defaults), the patterns matched by RE2 in linear time,
  once per distinct label value (`exporter.servicelevels.patterns`); one policy is shared by
  every organisation of a configuration;
- `breach_times` turns a group's sorted waiting-email stamps into sorted breach instants, once
  per poll, so a scrape only bisects (`models.ServiceLevelGroup`).

Pickups, judged against these levels, are found in `exporter.aggregation.pickups`.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from exporter.domain.models import PairKey
from exporter.servicelevels.calendar import (
    CONTINUOUS,
    DAY,
    HORIZON_DAYS,
    BusinessCalendar,
    Clock,
)
from exporter.servicelevels.patterns import PatternSet, pattern_set

# (email_type, work_type) -> level, remembered; groups are bounded by the label caps, this
# bound only guards against a policy object kept across very many polls.
_MEMO_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class ServiceLevel:
    """The promise that applies to a group: picked up within `target` seconds on `clock`."""

    target: float
    warning: float
    clock: Clock = CONTINUOUS
    calendar: str | None = None  # the calendar's name, for messages


@dataclass(frozen=True, slots=True)
class ServiceLevelRule:
    """Groups whose labels fully match both patterns (None matches anything) get `level`.

    The patterns are RE2 syntax (no backreferences or look-around); the settings refuse others.
    """

    level: ServiceLevel
    email_type: str | None = None
    work_type: str | None = None


@dataclass(slots=True)
class ServiceLevelPolicy:
    """Ordered rules with a default; `level(pair)` is memoised per group, each pattern matched
    once per distinct label value."""

    default: ServiceLevel = field(default_factory=lambda: ServiceLevel(86400.0, 3600.0))
    rules: tuple[ServiceLevelRule, ...] = ()
    _email_types: PatternSet = field(init=False, repr=False, compare=False)
    _work_types: PatternSet = field(init=False, repr=False, compare=False)
    _memo: dict[PairKey, ServiceLevel] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._email_types = pattern_set(tuple(r.email_type for r in self.rules))
        self._work_types = pattern_set(tuple(r.work_type for r in self.rules))

    def level(self, pair: PairKey) -> ServiceLevel:
        """The level of an (email_type, work_type) group, matched on its exported label values."""
        found = self._memo.get(pair)
        if found is None:
            email_type, work_type = pair
            both = self._email_types.matching(email_type) & self._work_types.matching(work_type)
            # The lowest set bit is the first rule that matches both labels.
            found = self.rules[(both & -both).bit_length() - 1].level if both else self.default
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[pair] = found
        return found


def breach_times(stamps: array[float], level: ServiceLevel, now: float) -> array[float]:
    """Sorted breach instants of emails queued at the sorted `stamps`.

    On a continuous clock this is a shifted copy; on a business clock each stamp is clamped to
    the calendar's horizon (a stamp from the far past or future must not make the calendar
    build years of intervals) and walked forward.
    """
    target = level.target
    if level.clock is CONTINUOUS:
        return array("d", [t + target for t in stamps])
    lo, hi = now - HORIZON_DAYS * DAY, now + DAY
    clamped = [min(max(t, lo), hi) for t in stamps]
    if isinstance(level.clock, BusinessCalendar):
        return level.clock.deadlines(clamped, target)
    deadline = level.clock.deadline
    return array("d", [deadline(t, target) for t in clamped])
