"""Frozen domain types shared by the client, the aggregation and the collector."""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import msgspec

# (state, email_type, work_type): the label set of the per-state queue series.
GroupKey = tuple[str, str, str]
# (email_type, work_type): the label set of the waiting-age histogram.
PairKey = tuple[str, str]
# (agent, state): the label set of the per-agent workload gauge.
AgentKey = tuple[str, str]
# An email id as the aggregation keeps it: canonical decimal ids as ints, others as strings,
# over-long ones as a digest.
EmailId = str | int | bytes


class Email(msgspec.Struct, frozen=True, rename="camel", gc=False):
    """The fields of one API `EmailItem` that the exporter uses; everything else is never decoded.

    Personal data (addresses, subject, umId) is deliberately absent.
    """

    id: str | int | None = None
    state: str | None = None
    email_type: str | None = None
    work_type_id: str | int | None = None
    work_type_name: str | None = None
    work_handler_id: str | int | None = None
    work_handler_name: str | None = None
    thread_id: str | int | None = None
    # ISO 8601 text; the page decoder's fast path (decode.WireEmail) has them parsed already.
    queued_time: str | None = None
    received_time: str | None = None
    start_time: str | None = None
    active_time: str | None = None
    sent_time: str | None = None


@dataclass(frozen=True, slots=True)
class WaitingAges:
    """Timestamps of the waiting emails of one group, sorted, for scrape-time age buckets."""

    timestamps: array[float]
    timestamp_sum: float

    def bucket_counts(self, now: float, bounds: tuple[float, ...]) -> list[int]:
        """Cumulative counts of emails whose age at `now` is <= each bound (ages floor at 0)."""
        ts = self.timestamps
        n = len(ts)
        return [n - bisect_left(ts, now - le) for le in bounds]

    def age_sum(self, now: float) -> float:
        """Sum of ages at `now`; emails stamped in the future count as age 0."""
        ts = self.timestamps
        future = len(ts) - bisect_right(ts, now)
        if not future:
            return len(ts) * now - self.timestamp_sum
        past = ts[: len(ts) - future]
        return len(past) * now - sum(past)


# Folded values remembered per organisation, so each is counted once (see FoldMemory).
FOLD_MEMORY = 32_768


class FoldMemory:
    """Which (label, value) pairs were already counted as folded into `other`.

    Only a 64-bit hash of each pair is kept, at most `limit` of them in insertion order (about
    100 bytes each: 3.2 MB at the default); past that the oldest are forgotten, and a value
    forgotten and folded again is counted again. Updated only when a poll succeeds, so a
    failed poll never marks a value as counted.
    """

    __slots__ = ("_seen", "limit")

    def __init__(self, limit: int = FOLD_MEMORY) -> None:
        self.limit = limit
        self._seen: dict[int, None] = {}

    def __contains__(self, key: int) -> bool:
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def remembering(self, keys: set[int]) -> FoldMemory:
        """This memory with `keys` added and the oldest beyond the limit forgotten, as a new one
        when there are any (this one unchanged: a poll that is abandoned after computing its
        snapshot must not mark values counted)."""
        if not keys - self._seen.keys():
            return self
        seen = self._seen | dict.fromkeys(keys)
        memory = FoldMemory(self.limit)
        memory._seen = seen if len(seen) <= self.limit else dict.fromkeys(list(seen)[-self.limit :])
        return memory


@dataclass(frozen=True, slots=True)
class ServiceLevelGroup:
    """A group's service level and the sorted instants its waiting emails breach it."""

    target: float
    warning: float  # wall-clock seconds before a breach that an email counts as at risk
    breaches: array[float]

    def breached(self, now: float) -> int:
        """Waiting emails whose breach instant has come."""
        return bisect_right(self.breaches, now)

    def at_risk(self, now: float) -> int:
        """Waiting emails not yet breached that breach within `warning` of `now`."""
        return bisect_right(self.breaches, now + self.warning) - bisect_right(self.breaches, now)

    def next_breach(self, now: float) -> float | None:
        """When the next not-yet-breached email breaches (None when none will)."""
        i = bisect_right(self.breaches, now)
        if i < len(self.breaches) and self.breaches[i] != float("inf"):
            return self.breaches[i]
        return None


@dataclass(frozen=True, slots=True)
class Pickup:
    """One email picked up by an agent, as judged at the poll that saw it."""

    pair: PairKey
    wait: float  # wall-clock seconds from queued to picked up
    bucket: int  # index of the first wait-histogram bound >= wait (len(bounds) for +Inf)
    met: bool  # picked up before its target ran out on its group's clock
    exact: bool  # the pickup time came from activeTime, not from the poll's time


@dataclass(frozen=True, slots=True)
class Flow:
    """What changed between two consecutive successful polls."""

    arrivals: Counter[PairKey]
    departures: Counter[GroupKey]
    transitions: Counter[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class EmailMemory:
    """What the handling KPIs remember of each email for the next poll (SPEC §10).

    Each tracked email has a slot in parallel arrays (about 33 bytes), so the memory is as
    compact as the snapshot's own: when its current state was first seen, when its handling
    started (NaN: not yet), its receivedTime (else queuedTime; NaN: neither), an 8-byte key of
    its threadId (0: none; `handling.thread_hash`) and whether its beginning was seen (only
    then is it observed). Departed threads are remembered by key with their departure time,
    oldest first. The arrays are copied by the poll that first writes to them, so a snapshot
    never changes.
    """

    slots: Mapping[EmailId, int]
    free: array[int]
    since: array[float]
    start: array[float]
    received: array[float]
    thread: array[int]
    observed: bytearray
    threads: Mapping[int, float]


@dataclass(frozen=True, slots=True)
class HandlingKpis:
    """What the handling KPIs saw in one poll: observations since the previous poll, gauges of
    this one, and the memory the next poll starts from."""

    # (email_type, work_type) or state or email_type, and the observed seconds; None when the
    # KPI is not measured (its family is on metric_denylist).
    handle: tuple[tuple[PairKey, float], ...] | None = None
    resolution: tuple[tuple[PairKey, float], ...] | None = None
    dwell: tuple[tuple[str, float], ...] | None = None
    delivery_lag: tuple[tuple[str, float], ...] | None = None
    repeats: Mapping[PairKey, int] | None = None
    # Distinct agents on emails in handling states, and the emails per agent as cumulative
    # counts over AGENT_LOAD_BUCKETS and +Inf, with their sum (None: not measured).
    agents_working: int | None = None
    agent_load: tuple[tuple[int, ...], int] | None = None
    # (work_type_id, work_type name) -> when an email last carried the pair.
    work_type_info: Mapping[tuple[str, str], float] = field(default_factory=dict)
    memory: EmailMemory | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one successful poll of one organisation found; replaced whole by the next one."""

    taken_at: float
    counts: Mapping[GroupKey, int]
    oldest: Mapping[GroupKey, float]
    waiting: Mapping[PairKey, WaitingAges]
    agents: Mapping[AgentKey, int]
    # email id -> its group; numeric ids are kept as ints (see SnapshotBuilder.add).
    memberships: Mapping[EmailId, GroupKey]
    last_seen: Mapping[PairKey, float]
    reported_items: int | None = None
    duplicates: int = 0
    invalid: Mapping[str, int] = field(default_factory=dict)
    overflow: Mapping[str, int] = field(default_factory=dict)
    undated: int = 0
    # The flow since the snapshot this one was built on (None for the first), counted while
    # aggregating so that no second pass over the ids is needed.
    flow: Flow | None = None
    # Service levels per (email_type, work_type), and the pickups since the previous snapshot.
    service: Mapping[PairKey, ServiceLevelGroup] = field(default_factory=dict)
    pickups: tuple[Pickup, ...] = ()
    # Pickup memory, ids of this snapshot only: turned Invalid while waiting (still watched);
    # counted. (Whether an email was waiting is its group's state in `memberships`.)
    watched: AbstractSet[EmailId] = frozenset()
    picked: AbstractSet[EmailId] = frozenset()
    # The wait-histogram bounds the pickups' `bucket` indexes refer to.
    wait_bounds: tuple[float, ...] = ()
    # Which folded label values were already counted in label_overflow_total (exporter.aggregation.labels).
    fold_memory: FoldMemory = field(default_factory=FoldMemory)
    # Handling KPIs (exporter.aggregation.handling).
    handling: HandlingKpis = field(default_factory=HandlingKpis)

    @property
    def unique_items(self) -> int:
        """Emails counted in this snapshot (duplicates and invalid items excluded)."""
        return len(self.memberships)
