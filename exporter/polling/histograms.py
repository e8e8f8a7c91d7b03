"""The poll counters kept as histograms: request durations, pickup waits and the handling KPIs'
observations, each new poll's built as copies so a scrape never sees one half-updated."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from exporter.domain.models import PairKey, Snapshot

REQUEST_DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
K = TypeVar("K")


@dataclass(slots=True)
class DurationHistogram:
    """A fixed-bucket histogram of request durations (non-cumulative counts per bucket)."""

    bounds: tuple[float, ...] = REQUEST_DURATION_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(REQUEST_DURATION_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """(`le`, cumulative count) pairs ending with `+Inf`."""
        running = 0
        out = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


@dataclass(slots=True)
class WaitHistogram:
    """Observed seconds of one series (pickup waits, handling KPIs): counts per bucket index
    (non-cumulative), sum and count."""

    counts: dict[int, int] = field(default_factory=dict)
    total: float = 0.0
    count: int = 0

    def cumulative(self, buckets: int) -> list[int]:
        """Cumulative counts for bucket indexes 0 .. `buckets` (the last one is +Inf)."""
        running, out = 0, []
        for i in range(buckets + 1):
            running += self.counts.get(i, 0)
            out.append(running)
        return out


EMPTY_HISTOGRAM = WaitHistogram()  # shared: histograms are copied before they change


@dataclass(frozen=True, slots=True)
class HandlingCounters:
    """The handling KPIs' counters (SPEC §10), replaced whole by every poll, never changed in
    place: histograms of handle and resolution time per (email_type, work_type), of state
    stays per state and of delivery lags per email_type; repeat contacts per pair."""

    handle: dict[PairKey, WaitHistogram] = field(default_factory=dict)
    resolution: dict[PairKey, WaitHistogram] = field(default_factory=dict)
    dwell: dict[str, WaitHistogram] = field(default_factory=dict)
    delivery_lag: dict[str, WaitHistogram] = field(default_factory=dict)
    repeats: dict[PairKey, int] = field(default_factory=dict)
    bounds: tuple[float, ...] = ()  # the bucket bounds all four are counted in

    def counted(self, snapshot: Snapshot) -> HandlingCounters:
        """These counters with the snapshot's observations added, as new objects. Pair series
        follow the snapshot's live pairs (pre-created at zero, dropped after series_ttl), like
        the pickup counters; a KPI that is not measured has none."""
        kpis, bounds, live = snapshot.handling, snapshot.wait_bounds, snapshot.last_seen
        old = self if bounds == self.bounds else HandlingCounters()  # a reload changed the buckets
        repeats: dict[PairKey, int] = {}
        if kpis.repeats is not None:
            repeats = {k: n for k, n in old.repeats.items() if k in live}
            for pair, n in kpis.repeats.items():
                repeats[pair] = repeats.get(pair, 0) + n
            repeats |= {pair: 0 for pair in live if pair not in repeats}
        return HandlingCounters(
            by_pair(old.handle, kpis.handle, bounds, live),
            by_pair(old.resolution, kpis.resolution, bounds, live),
            {} if kpis.dwell is None else observed(old.dwell, kpis.dwell, bounds),
            {}
            if kpis.delivery_lag is None
            else observed(old.delivery_lag, kpis.delivery_lag, bounds),
            repeats,
            bounds,
        )

    def series(self) -> int:
        """Series of the state and email-type histograms (not priced per pair: reserved)."""
        return (len(self.dwell) + len(self.delivery_lag)) * (len(self.bounds) + 3)


def observed(
    histograms: dict[K, WaitHistogram],
    observations: Iterable[tuple[K, float]],
    bounds: tuple[float, ...],
) -> dict[K, WaitHistogram]:
    """`histograms` (a new dict) with each (key, seconds) observed; changed ones are copies."""
    out = dict(histograms)
    changed: dict[K, WaitHistogram] = {}
    for key, seconds in observations:
        hist = changed.get(key)
        if hist is None:
            old = out.get(key) or WaitHistogram()
            hist = changed[key] = WaitHistogram(dict(old.counts), old.total, old.count)
        bucket = bisect_left(bounds, seconds)
        hist.counts[bucket] = hist.counts.get(bucket, 0) + 1
        hist.total += seconds
        hist.count += 1
    out.update(changed)
    return out


def by_pair(
    histograms: dict[PairKey, WaitHistogram],
    observations: Iterable[tuple[PairKey, float]] | None,
    bounds: tuple[float, ...],
    live: Mapping[PairKey, float],
) -> dict[PairKey, WaitHistogram]:
    """Per-pair histograms with `observations` added, one for every live pair (None: the KPI
    is not measured, so none)."""
    if observations is None:
        return {}
    out = observed({k: h for k, h in histograms.items() if k in live}, observations, bounds)
    for pair in live:
        out.setdefault(pair, EMPTY_HISTOGRAM)
    return out
