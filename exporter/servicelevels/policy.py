"""Service levels: which target applies to a group, and when each waiting email breaches it.

Pure: no I/O, no clock of its own; `now` comes in as an argument. Two pieces, each used by the
aggregation pass (`exporter.aggregation.builder.SnapshotBuilder`):

- `ServiceLevelPolicy` maps an (email_type, work_type) group to its `ServiceLevel` by ordered
  rules (first full regex match wins, else the defaults);
- `breach_times` turns a group's sorted waiting-email stamps into sorted breach instants, once
  per poll, so a scrape only bisects (`models.ServiceLevelGroup`).

Pickups, judged against these levels, are found in `exporter.aggregation.pickups`.
"""

from __future__ import annotations

import re
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
    """Groups whose labels fully match both patterns (None matches anything) get `level`."""

    level: ServiceLevel
    email_type: re.Pattern[str] | None = None
    work_type: re.Pattern[str] | None = None

    def matches(self, email_type: str, work_type: str) -> bool:
        return (self.email_type is None or self.email_type.fullmatch(email_type) is not None) and (
            self.work_type is None or self.work_type.fullmatch(work_type) is not None
        )


@dataclass(slots=True)
class ServiceLevelPolicy:
    """Ordered rules with a default; `level(pair)` is memoised per group."""

    default: ServiceLevel = field(default_factory=lambda: ServiceLevel(86400.0, 3600.0))
    rules: tuple[ServiceLevelRule, ...] = ()
    _memo: dict[PairKey, ServiceLevel] = field(default_factory=dict, repr=False, compare=False)

    def level(self, pair: PairKey) -> ServiceLevel:
        """The level of an (email_type, work_type) group, matched on its exported label values."""
        found = self._memo.get(pair)
        if found is None:
            found = next((r.level for r in self.rules if r.matches(*pair)), self.default)
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
