"""Service levels: which target applies to a group, when each waiting email breaches it, and pickups.

Pure: no I/O, no clock of its own; `now` comes in as an argument. Three pieces, each fed by
the aggregation pass (`aggregate.SnapshotBuilder`):

- `ServiceLevelPolicy` maps an (email_type, work_type) group to its `ServiceLevel` by ordered
  rules (first full regex match wins, else the defaults);
- `breach_times` turns a group's sorted waiting-email stamps into sorted breach instants, once
  per poll, so a scrape only bisects (`models.ServiceLevelGroup`);
- `PickupDetector` finds the emails picked up since the previous poll (SPEC §6) and judges each
  against its group's target on the group's clock.

Pickup rules (also in the README): an email is picked up when first seen in a state outside the
waiting states other than `Invalid`, after having been seen waiting in an earlier poll, or, when
it is new since the previous poll, with an `activeTime` later than its `queuedTime`. Each email is
counted once while it stays in the list. The first poll (a restart) is a baseline: emails already
out of the waiting states in it were picked up before the exporter watched and are not counted.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime

from exporter.businesshours import (
    CONTINUOUS,
    DAY,
    HORIZON_DAYS,
    BusinessCalendar,
    Clock,
)
from exporter.models import Email, EmailId, GroupKey, PairKey, Pickup

# (email_type, work_type) -> level, remembered; groups are bounded by the label caps, this
# bound only guards against a policy object kept across very many polls.
_MEMO_LIMIT = 100_000
INVALID_STATE = "Invalid"
# Text timestamps to Unix time (aggregate.parse_timestamp); the page decoder may have parsed
# some already into datetimes, which `_seconds` reads directly.
Parse = Callable[[str | None], float | None]


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


@dataclass(frozen=True, slots=True)
class _Candidate:
    email_id: EmailId
    email: Email


class PickupDetector:
    """Pickups of one poll, from what the previous one remembered.

    Whether an email was waiting at the previous poll is its previous group's state; besides
    that the memory is `picked` (counted already) and `watched` (turned Invalid while waiting,
    so still watched), both of the previous snapshot. The new memory holds only ids present in
    this poll, so it is pruned as emails leave the list.
    """

    __slots__ = ("_candidates", "_parse", "_waiting_states", "first_poll", "picked",
                 "previous_picked", "previous_watched", "watched")  # fmt: skip

    def __init__(
        self,
        previous_watched: Set[EmailId],
        previous_picked: Set[EmailId],
        *,
        waiting_states: Set[str],
        first_poll: bool,
        parse: Parse,
    ) -> None:
        self.previous_watched = previous_watched
        self.previous_picked = previous_picked
        self.first_poll = first_poll
        self._waiting_states = waiting_states
        self._parse = parse
        self.watched: set[EmailId] = set()
        self.picked: set[EmailId] = set()
        self._candidates: list[_Candidate] = []

    def _seconds(self, value: str | datetime | None) -> float | None:
        if isinstance(value, datetime):
            return value.timestamp()
        return self._parse(value)

    def was_waiting(self, email_id: EmailId, old: GroupKey | None) -> bool:
        """Whether the previous poll saw the email waiting (or watched it)."""
        if old is not None and old[0] in self._waiting_states:
            return True
        return email_id in self.previous_watched

    def not_waiting(self, email_id: EmailId, email: Email, old: GroupKey | None) -> None:
        """An email outside the waiting states; `old` is its previous group (None: new)."""
        if email_id in self.previous_picked:
            self.picked.add(email_id)
            return
        was_waiting = self.was_waiting(email_id, old)
        if email.state == INVALID_STATE:
            if was_waiting:
                self.watched.add(email_id)  # not a pickup, but keep watching it
            return
        new = old is None
        if was_waiting or (new and not self.first_poll and self._active_after_queued(email)):
            self.picked.add(email_id)
            self._candidates.append(_Candidate(email_id, email))

    def _active_after_queued(self, email: Email) -> bool:
        """Whether the item says it was picked up after it was queued."""
        active = self._seconds(email.active_time)
        queued = self._seconds(email.queued_time)
        return active is not None and queued is not None and active > queued

    def pickups(
        self,
        now: float,
        level: Callable[[PairKey], ServiceLevel],
        bounds: Sequence[float],
        pair_of: Callable[[EmailId], PairKey],
    ) -> list[Pickup]:
        """The pickups found, judged at `now` (the poll's time) on each group's clock.

        `bounds` are the wait histogram's bucket bounds; each pickup carries its bucket.
        `pair_of` gives an email's final group, after any folding into `other`.
        """
        parse = self._seconds
        out = []
        for candidate in self._candidates:
            email = candidate.email
            queued = parse(email.queued_time)
            if queued is None:
                queued = parse(email.received_time)
                if queued is None:
                    queued = parse(email.start_time)
            if queued is None:
                continue  # no time to measure from: not counted (it is in `undated`)
            active = parse(email.active_time)
            exact = active is not None and queued <= active
            picked_at = min(active, now) if exact and active is not None else now
            pair = pair_of(candidate.email_id)
            lvl = level(pair)
            met = lvl.clock.elapsed(queued, picked_at) < lvl.target
            wait = max(0.0, picked_at - queued)
            out.append(Pickup(pair, wait, bisect_left(bounds, wait), met, exact))
        return out
