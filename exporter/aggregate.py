"""Pure aggregation of API emails into a `Snapshot`, and the flow diff between two snapshots.

No I/O, no clock, no prometheus_client: time comes in as `now`, so every rule here is testable
without an event loop. Emails are fed page by page (`SnapshotBuilder.add`) so no list of all
items is ever kept.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from exporter.models import AgentKey, Email, GroupKey, PairKey, Snapshot, WaitingAges
from exporter.names import OTHER, STATES, UNKNOWN


@dataclass(frozen=True, slots=True)
class AggregationOptions:
    """The settings that shape a snapshot."""

    waiting_states: frozenset[str] = frozenset({"Queued", "Queued2", "Transferred", "Reassigned"})
    series_ttl: float = 3600.0
    max_work_types: int = 500
    agent_metrics: bool = False
    max_agents: int = 2000


def parse_timestamp(value: str | None) -> float | None:
    """Unix time of an ISO 8601 timestamp (`Z`, offsets, fractions); naive means UTC; else None."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (ValueError, TypeError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _age_origin(email: Email) -> float | None:
    """An email's age counts from `queuedTime`, else `receivedTime`, else `startTime`."""
    for raw in (email.queued_time, email.received_time, email.start_time):
        ts = parse_timestamp(raw)
        if ts is not None:
            return ts
    return None


def _label(*candidates: str | int | None) -> str:
    """The first non-empty candidate as a label value, else `unknown`."""
    for value in candidates:
        if value is not None and value != "":
            return str(value)
    return UNKNOWN


class _CappedLabel:
    """Admits up to `limit` distinct values; later ones fold into `other`."""

    __slots__ = ("admitted", "folded", "limit")

    def __init__(self, limit: int, admitted: Iterable[str] = ()) -> None:
        self.limit = limit
        self.admitted = set(admitted)
        self.folded = 0

    def __call__(self, value: str) -> str:
        if value in self.admitted:
            return value
        if len(self.admitted) < self.limit:
            self.admitted.add(value)
            return value
        self.folded += 1
        return OTHER


class SnapshotBuilder:
    """Accumulates one poll's emails page by page, then freezes them into a `Snapshot`."""

    def __init__(self, options: AggregationOptions, previous: Snapshot | None = None) -> None:
        self._options = options
        self._previous_seen: dict[PairKey, float] = dict(previous.last_seen) if previous else {}
        # Work types that still have live series keep their place under the cap.
        self._work_types = _CappedLabel(
            options.max_work_types, (wt for _, wt in self._previous_seen)
        )
        self._agents = _CappedLabel(options.max_agents)
        self._keys: dict[GroupKey, GroupKey] = {}
        self._memberships: dict[str, GroupKey] = {}
        self._counts: Counter[GroupKey] = Counter()
        self._oldest: dict[GroupKey, float] = {}
        self._waiting: dict[PairKey, list[float]] = {}
        self._agent_counts: Counter[AgentKey] = Counter()
        self._invalid: Counter[str] = Counter()
        self._duplicates = 0
        self._undated = 0

    def add(self, emails: Iterable[Email]) -> None:
        """Count a page of emails; repeated ids are counted once and reported as duplicates."""
        waiting_states = self._options.waiting_states
        for email in emails:
            email_id = email.id
            if email_id is None or email_id == "":
                self._invalid["missing_id"] += 1
                continue
            email_id = str(email_id)
            if email_id in self._memberships:
                self._duplicates += 1
                continue
            state = email.state or UNKNOWN
            email_type = email.email_type or UNKNOWN
            work_type = self._work_types(_label(email.work_type_name, email.work_type_id))
            key = self._keys.setdefault(
                (state, email_type, work_type), (state, email_type, work_type)
            )
            self._memberships[email_id] = key
            self._counts[key] += 1
            if self._options.agent_metrics:
                agent = _label(email.work_handler_name, email.work_handler_id)
                if agent != UNKNOWN:
                    self._agent_counts[(self._agents(agent), state)] += 1
            ts = _age_origin(email)
            if ts is None:
                self._undated += 1
                continue
            if ts < self._oldest.get(key, float("inf")):
                self._oldest[key] = ts
            if state in waiting_states:
                self._waiting.setdefault((email_type, work_type), []).append(ts)

    def add_invalid(self, reason: str, count: int = 1) -> None:
        """Record items the decoder had to skip (not an object, wrong field types...)."""
        self._invalid[reason] += count

    def finish(self, now: float, reported_items: int | None = None) -> Snapshot:
        """Freeze what was added into a snapshot taken at `now`."""
        ttl = self._options.series_ttl
        last_seen = {pair: t for pair, t in self._previous_seen.items() if now - t <= ttl}
        for _, email_type, work_type in self._counts:
            last_seen[(email_type, work_type)] = now
        counts: dict[GroupKey, int] = {}
        for email_type, work_type in last_seen:
            for state in STATES:
                counts[(state, email_type, work_type)] = 0
        counts.update(self._counts)
        waiting: dict[PairKey, WaitingAges] = {}
        for pair in last_seen:
            stamps = sorted(self._waiting.get(pair, ()))
            waiting[pair] = WaitingAges(array("d", stamps), sum(stamps))
        overflow = {
            label: capped.folded
            for label, capped in (("work_type", self._work_types), ("agent", self._agents))
            if capped.folded
        }
        return Snapshot(
            taken_at=now,
            counts=counts,
            oldest=self._oldest,
            waiting=waiting,
            agents=dict(self._agent_counts),
            memberships=self._memberships,
            last_seen=last_seen,
            reported_items=reported_items,
            duplicates=self._duplicates,
            invalid=dict(self._invalid),
            overflow=overflow,
            undated=self._undated,
        )


def aggregate(
    emails: Iterable[Email],
    *,
    now: float,
    options: AggregationOptions,
    previous: Snapshot | None = None,
    reported_items: int | None = None,
) -> Snapshot:
    """Aggregate a complete list of emails in one call."""
    builder = SnapshotBuilder(options, previous)
    builder.add(emails)
    return builder.finish(now, reported_items)


@dataclass(frozen=True, slots=True)
class Flow:
    """What changed between two consecutive successful polls."""

    arrivals: Counter[PairKey]
    departures: Counter[GroupKey]
    transitions: Counter[tuple[str, str]]


def diff(previous: Snapshot, current: Snapshot) -> Flow:
    """Arrivals, departures (by last state) and state transitions, matched by email id."""
    before, after = previous.memberships, current.memberships
    arrivals: Counter[PairKey] = Counter()
    departures: Counter[GroupKey] = Counter()
    transitions: Counter[tuple[str, str]] = Counter()
    for email_id, (state, email_type, work_type) in after.items():
        old = before.get(email_id)
        if old is None:
            arrivals[(email_type, work_type)] += 1
        elif old[0] != state:
            transitions[(old[0], state)] += 1
    for email_id, key in before.items():
        if email_id not in after:
            departures[key] += 1
    return Flow(arrivals, departures, transitions)
