"""Metric families of the fast `/metrics` path: declared once, filled per scrape, rendered off the loop.

A `Family` is a name, a type, a HELP text and label names, declared once at module level. At
scrape time a collector's `blocks()` takes a fresh `Block` from each family and fills it with
series; `exporter.metrics.textformat` turns the blocks into text 0.0.4 or OpenMetrics 1.0 in a
worker thread. Declaring and filling families, as `exporter.metrics.queue` does (a test runs this)::

    >>> from exporter.domain import names
    >>> EMAILS = Family.gauge(names.EMAILS, "Emails.", "org", "state", per="group")
    >>> emails = EMAILS.block()
    >>> emails.add(("acme", "Queued"), 12)  # one series: label values, value
    >>> emails.add_all(("beta",), {"Queued": 3, "Active": 1})  # a series per key: prefix + key
    >>> list(emails.items())
    [(('acme', 'Queued'), 12), (('beta', 'Queued'), 3), (('beta', 'Active'), 1)]
    >>> AGES = Family.gaugehistogram(names.WAITING_EMAIL_AGE, "Ages.", "org", "work_type")
    >>> ages = AGES.block(buckets=(60.0, 300.0))  # histograms: bounds given, +Inf implied
    >>> def histogram(seconds):  # cumulative counts per bound, then +Inf; and the sum
    ...     counts = [sum(s <= bound for s in seconds) for bound in (60.0, 300.0)]
    ...     return [*counts, len(seconds)], sum(seconds)
    >>> ages.add_all(("acme",), {"Billing": (30.0, 100.0, 900.0)}, histogram)
    >>> list(ages.items())
    [(('acme', 'Billing'), ([1, 2, 3], 1030.0))]

A collector's `blocks()` yields such blocks.

Rules that keep scrapes cheap and safe:

- `blocks()` runs on the event loop: it must only read memory and do work per organisation, not
  per series. Whole mappings go to `add_all`; their values become samples later, in the render
  thread, optionally through `value(v)` (e.g. an age from a stored timestamp and `now`).
- A mapping given to `add_all` is read after `blocks()` returns, so it must never change again:
  pass a frozen `Snapshot`'s mapping, or a copy (`dict(counter)`) of anything the poller updates.
  A mapping that is the same object as at the last scrape (and has no `value`) is not rendered
  again: its lines are reused.
- Label values are strings given in the declared order; the output sorts labels by name, like
  prometheus_client. Keys of an `add_all` mapping are tuples (the labels after the prefix), or a
  plain string when one label remains. Counter names carry no `_total` (added on output).
- Each family is yielded at most once per scrape.
- Histogram values are `(cumulative counts, one per bound plus +Inf, sum)`.

Collectors with `blocks()` registered in a `Registry` (`exporter.app.wiring.build_registry`) take
this path; any other collector registered there (ProcessCollector, GCCollector,
PlatformCollector…) is collected in the render thread and written by prometheus_client's own
exposition.

Every family with an `org` label is countable per organisation without rendering it:
`series_by_org(blocks)` counts the samples (histogram buckets, `_count` and `_sum` included)
each organisation exports. `to_metric_family` gives prometheus_client's view of a block, for
`generate_latest` and the tests that hold the two renderers to the same bytes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.aggregation.series_budget import SeriesCost

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
Kind = Literal["gauge", "counter", "histogram", "gaugehistogram"]
# What a family's series grow with, for the series budget (exporter.aggregation.series_budget):
# an (email_type, work_type) pair, a (state, email_type, work_type) group, a group holding a dated
# email, or an (agent, state).
Per = Literal["pair", "group", "dated_group", "agent"]
LabelValues = tuple[str, ...]
# A histogram sample: cumulative bucket counts (one per bound, then +Inf) and the sum.
HistogramValue = tuple[Sequence[float], float]
Value = Any  # float | int for gauges and counters, HistogramValue for histograms
ValueFn = Callable[[Any], Value]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family's name, type, HELP text and label names."""

    name: str
    kind: Kind
    help: str
    labels: LabelValues
    # What the family's series grow with (None: a fixed number per organisation), and how many
    # series it has per unit besides a histogram's buckets (e.g. one per service-level outcome).
    per: Per | None = None
    per_unit: int = 1
    # Position of the `org` label, or -1 when the family is not per organisation.
    org_index: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "org_index", self.labels.index("org") if "org" in self.labels else -1
        )
        if not _METRIC_NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r}: not a valid metric name")
        for label in self.labels:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"{self.name}: {label!r} is not a valid label name")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{self.name}: duplicate label names {self.labels}")
        if "le" in self.labels and self.kind in ("histogram", "gaugehistogram"):
            raise ValueError(f"{self.name}: `le` is the bucket label of histograms")

    @classmethod
    def gauge(
        cls, name: str, help: str, *labels: str, per: Per | None = None, per_unit: int = 1
    ) -> Family:
        """A gauge."""
        return cls(name, "gauge", help, labels, per, per_unit)

    @classmethod
    def counter(
        cls, name: str, help: str, *labels: str, per: Per | None = None, per_unit: int = 1
    ) -> Family:
        """A counter; `name` without `_total`."""
        if name.endswith("_total"):
            raise ValueError(f"{name}: declare counters without the _total suffix")
        return cls(name, "counter", help, labels, per, per_unit)

    @classmethod
    def histogram(
        cls, name: str, help: str, *labels: str, per: Per | None = None, per_unit: int = 1
    ) -> Family:
        """A histogram (`_bucket`, `_count`, `_sum`); bounds are given per `block()`."""
        return cls(name, "histogram", help, labels, per, per_unit)

    @classmethod
    def gaugehistogram(
        cls, name: str, help: str, *labels: str, per: Per | None = None, per_unit: int = 1
    ) -> Family:
        """A gauge histogram (`_bucket`, `_gcount`, `_gsum`); bounds are given per `block()`."""
        return cls(name, "gaugehistogram", help, labels, per, per_unit)

    @property
    def exposed_name(self) -> str:
        """The name as exposed in the text format (counters end in `_total`)."""
        return f"{self.name}_total" if self.kind == "counter" else self.name

    def series_per_unit(self, buckets: int) -> int:
        """Series per unit of `per`: a histogram has a series per bound, +Inf, count and sum."""
        histogram = self.kind in ("histogram", "gaugehistogram")
        return self.per_unit * (buckets + 3 if histogram else 1)

    def block(self, buckets: Sequence[float] = ()) -> Block:
        """An empty block of this family's series for one scrape."""
        histogram = self.kind in ("histogram", "gaugehistogram")
        if histogram != bool(buckets):
            raise ValueError(f"{self.name}: bucket bounds are given for histograms, and only them")
        return Block(self, (*(format_le(b) for b in buckets), "+Inf") if histogram else ())


@dataclass(slots=True)
class Rows:
    """Series sharing the label values `prefix`: one per key of `mapping`, value through `value`."""

    prefix: LabelValues
    mapping: Mapping[Any, Value]
    value: ValueFn | None = None


@dataclass(slots=True)
class Block:
    """The series of one family in one scrape."""

    family: Family
    # `le` label values of histograms, ending with `+Inf`.
    le: tuple[str, ...] = ()
    singles: list[tuple[LabelValues, Value]] = field(default_factory=list)
    rows: list[Rows] = field(default_factory=list)

    def add(self, labels: Sequence[str], value: Value) -> None:
        """One series: label values in declared order, and its value."""
        if len(labels) != len(self.family.labels):
            raise ValueError(f"{self.family.name}: labels {self.family.labels}, got {labels}")
        self.singles.append((tuple(labels), value))

    def add_all(
        self, prefix: Sequence[str], mapping: Mapping[Any, Value], value: ValueFn | None = None
    ) -> None:
        """A series per key of `mapping` (never mutated afterwards): labels `prefix` + key."""
        if not len(prefix) > self.family.org_index:
            raise ValueError(f"{self.family.name}: the org label must be in the prefix")
        if len(prefix) >= len(self.family.labels):
            raise ValueError(f"{self.family.name}: labels {self.family.labels}, prefix {prefix}")
        self.rows.append(Rows(tuple(prefix), mapping, value))

    @property
    def samples_per_series(self) -> int:
        """Lines one series exports: buckets plus count and sum for histograms, else one."""
        return len(self.le) + 2 if self.le else 1

    def items(self) -> Iterable[tuple[LabelValues, Value]]:
        """Every series as (all label values, sample value), in output order."""
        yield from self.singles
        for rows in self.rows:
            fn, scalar = rows.value, len(rows.prefix) + 1 == len(self.family.labels)
            for key, raw in rows.mapping.items():
                tail = (key,) if scalar else key
                yield rows.prefix + tail, raw if fn is None else fn(raw)


@runtime_checkable
class FastCollector(Protocol):
    """A collector with a fast path: `blocks()` runs on the event loop (see exporter.metrics.families)."""

    def blocks(self) -> Iterable[Block]: ...


class Registry(CollectorRegistry):
    """A `CollectorRegistry` that keeps its collectors in order, so the renderer can find the
    fast ones; every other collector (ProcessCollector, GCCollector…) goes the generic way."""

    def __init__(self) -> None:
        super().__init__(auto_describe=False)
        self.collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self.collectors.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self.collectors.remove(collector)


# What a scrape hands to the render thread: a fast collector's blocks, or a generic collector.
Part = list[Block] | Collector


def gather(registry: CollectorRegistry) -> list[Part]:
    """Take every fast collector's blocks (on the event loop); leave the rest for the render."""
    if not isinstance(registry, Registry):
        return [registry]
    return [gather_one(c) for c in registry.collectors]


def gather_one(collector: Collector) -> Part:
    """`gather` of one collector of a `Registry`."""
    return list(collector.blocks()) if isinstance(collector, FastCollector) else collector


@runtime_checkable
class SteppedCollector(Protocol):
    """A fast collector whose blocks can also be taken a few organisations at a time: the
    generator yields between steps and returns the blocks (`exporter.web.exposition`)."""

    def steps(self) -> Generator[None, None, list[Block]]: ...


def series_by_org(blocks: Iterable[Block]) -> Counter[str]:
    """Samples each organisation exports across `blocks`, without rendering them."""
    counts: Counter[str] = Counter()
    for block in blocks:
        at = block.family.org_index
        if at < 0:
            continue
        per = block.samples_per_series
        for labels, _ in block.singles:
            counts[labels[at]] += per
        for rows in block.rows:
            if at < len(rows.prefix):
                counts[rows.prefix[at]] += per * len(rows.mapping)
    return counts


def format_le(bound: float) -> str:
    """`le` label values as Prometheus clients write them (`60.0`, `2.5`)."""
    return repr(float(bound))


def to_metric_family(block: Block) -> Metric:
    """prometheus_client's family for the same series (slow; for `generate_latest` and tests)."""
    family, labels = block.family, list(block.family.labels)
    if family.kind in ("gauge", "counter"):
        scalar = (GaugeMetricFamily if family.kind == "gauge" else CounterMetricFamily)(
            family.name, family.help, labels=labels
        )
        for values, value in block.items():
            scalar.add_metric(list(values), value)
        return scalar
    histogram = (
        HistogramMetricFamily if family.kind == "histogram" else GaugeHistogramMetricFamily
    )(family.name, family.help, labels=labels)
    for values, (counts, total) in block.items():
        histogram.add_metric(list(values), list(zip(block.le, counts, strict=True)), total)
    return histogram


def series_cost(families: Iterable[Family], buckets: int) -> SeriesCost:
    """What one pair, group, dated group and agent cost in series, summed over the declared
    `families` whose series grow with them; `buckets` is the number of age-histogram bounds."""
    cost = dict.fromkeys(("pair", "group", "dated_group", "agent"), 0)
    for family in families:
        if family.per is not None:
            cost[family.per] += family.series_per_unit(buckets)
    return SeriesCost(**cost)
