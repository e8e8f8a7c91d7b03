"""The fast renderer against prometheus_client's own exposition, its parsers and promtool."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.platform_collector import PlatformCollector

from exporter.aggregation.builder import AggregationOptions, aggregate
from exporter.domain.models import Email
from exporter.metrics.families import Block, Family, Registry, gather, to_metric_family
from exporter.metrics.queue import QueueCollector
from exporter.metrics.textformat import Renderer, go_float, render
from exporter.polling.store import Store
from tests.fakes import Clock

T0 = 1_800_000_000.0
ODD = 'back\\slash "quoted"\nnew line — ünïcødé {braces}'
SPECIAL = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "negzero": -0.0}
NUMBERS = {
    "big": 12_345_678,
    "huge": 10**20,
    "neg": -7,
    "tiny": 1.5e-7,
    "frac": 0.1,
    "ts": T0 + 0.25,
}

GAUGE = Family.gauge("t_level", 'A gauge with "quotes", a back\\slash\nand a new line.', "org", "k")
COUNTER = Family.counter("t_requests", "A counter.", "org", "code")
HISTOGRAM = Family.histogram("t_duration_seconds", "A histogram.", "org", "endpoint")
GAUGEHISTOGRAM = Family.gaugehistogram("t_age_seconds", "A gauge histogram.", "org", "kind")
EMPTY = Family.gauge("t_empty", "Declared, no series.", "org")


class Synthetic:
    """Every kind of family, filled through both `add` and `add_all`."""

    def __init__(self) -> None:
        self.gauges = {**SPECIAL, **NUMBERS, ODD: 3}
        self.ages = {"a": 10.0, ODD: 200.0}
        self.now = 1000.0

    def collect(self) -> Iterator[object]:
        for block in self.blocks():
            yield to_metric_family(block)

    def blocks(self) -> Iterator[Block]:
        gauge = GAUGE.block()
        gauge.add(("solo", "x"), 1)
        gauge.add_all((ODD,), self.gauges)
        counter = COUNTER.block()
        counter.add_all(("acme",), {"200": 5, "500": 0})
        histogram = HISTOGRAM.block(buckets=(0.1, 1.0, 2_500_000.0))
        histogram.add(("acme", "emails"), ([1, 3, 4, 4], 2.5))
        histogram.add_all(("b",), {"token": ([0, 0, 0, 1], math.inf)})
        aged = GAUGEHISTOGRAM.block(buckets=(60.0, 300.0))
        now = self.now

        def buckets(ts: float) -> tuple[list[float], float]:
            age = now - ts
            return [int(age <= 60), int(age <= 300), 1], age

        aged.add_all(("acme",), self.ages, buckets)
        aged.add_all(("b",), {"z": ([0, 1, 2], 7.0)})
        yield from (gauge, counter, histogram, aged, EMPTY.block())


def registry_of(*collectors: object) -> Registry:
    registry = Registry()
    for collector in collectors:
        registry.register(collector)  # type: ignore[arg-type]
    return registry


def queue_registry() -> Registry:
    clock = Clock(T0 + 30)
    store = Store(["acme", ODD])
    emails = [
        Email(id=str(i), state=s, email_type="InboundEmail", work_type_name=wt, queued_time=q)
        for i, (s, wt, q) in enumerate(
            [
                ("Queued", "Billing", "2027-01-15T07:59:00Z"),
                ("Queued", ODD, "2027-01-15T07:00:00Z"),
                ("Active", "Billing", None),
                ("Wrap", ODD, "2030-01-01T00:00:00Z"),
            ]
        )
    ]
    snap = aggregate(emails, now=T0, options=AggregationOptions(agent_metrics=True))
    store.orgs["acme"].record_success(snap, 0.25, None, T0 + 3600)
    store.orgs["acme"].observe_request("emails", "200", 0.3)
    store.orgs[ODD].record_failure("timeout", "timed out", 1.0, None)
    return registry_of(
        QueueCollector(
            store, age_buckets=(60.0, 3600.0), stale_after=1e9, poll_interval=30.0, clock=clock
        )
    )


@pytest.mark.parametrize("make", [lambda: registry_of(Synthetic()), queue_registry])
def test_fresh_and_warm_renders_equal_prometheus_client_byte_for_byte(make) -> None:
    registry = make()
    renderer = Renderer()
    for _ in range(2):  # the second render reuses what the first kept
        assert renderer.render(gather(registry), "text") == generate_latest(registry)
        assert renderer.render(gather(registry), "openmetrics") == openmetrics_latest(registry)


def test_changed_values_and_vanished_series_are_rendered_anew() -> None:
    synthetic = Synthetic()
    registry, renderer = registry_of(synthetic), Renderer()
    renderer.render(gather(registry), "text")
    synthetic.gauges = {"only": 2}  # a new mapping, as a new snapshot brings
    synthetic.ages = {"b": 5.0}
    synthetic.now += 100
    assert renderer.render(gather(registry), "text") == generate_latest(registry)
    assert renderer.remembered == 1  # the age prefix of the one series left


def test_both_parsers_read_back_every_sample() -> None:
    registry = registry_of(Synthetic())
    expected = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in registry.collect()
        for s in m.samples
    }
    for parse, fmt in ((parse_text, "text"), (parse_openmetrics, "openmetrics")):
        got = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for m in parse(render(registry, fmt).decode())  # type: ignore[arg-type]
            for s in m.samples
        }
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == value or (math.isnan(got[key]) and math.isnan(value)), key
        odd = [k for k in got if ("org", ODD) in k[1]]
        assert odd, "label values with backslash, quote, newline and unicode survive"


def test_promtool_finds_the_text_format_clean() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run `make system-deps`"
    for registry in (registry_of(Synthetic()), queue_registry()):
        result = subprocess.run(  # noqa: S603 -- fixed arguments
            [promtool, "check", "metrics"],
            input=render(registry, "text"),
            capture_output=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_standard_collectors_render_through_the_generic_path() -> None:
    class Plain:
        def collect(self) -> Iterator[GaugeMetricFamily]:
            yield GaugeMetricFamily("plain_value", "A plain collector.", value=2)

    registry = registry_of(Plain(), PlatformCollector(registry=None), Synthetic())
    text = render(registry, "text")
    assert text == generate_latest(registry)
    assert b"python_info{" in text and b"plain_value 2.0" in text
    om = render(registry, "openmetrics")
    assert om == openmetrics_latest(registry) and om.count(b"# EOF") == 1


def test_a_plain_collector_registry_still_renders() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(Synthetic())  # type: ignore[arg-type]
    assert render(registry) == generate_latest(registry)


def test_a_family_yielded_twice_is_a_bug_caught_at_render() -> None:
    class Twice:
        def blocks(self) -> Iterator[Block]:
            yield EMPTY.block()
            yield EMPTY.block()

    with pytest.raises(ValueError, match="yielded twice"):
        render(registry_of(Twice()))


@pytest.mark.parametrize(
    "value",
    [
        0,
        1,
        -1,
        999_999,
        1_000_000,
        10**20,
        -(10**17),
        0.5,
        1e-5,
        1234567.5,
        T0,
        True,
        *SPECIAL.values(),
    ],
)
def test_numbers_are_written_as_prometheus_client_writes_them(value: float) -> None:
    from prometheus_client.utils import floatToGoString

    assert go_float(value) == floatToGoString(value)


def test_numbers_at_every_magnitude_match_prometheus_client() -> None:
    import random

    from prometheus_client.utils import floatToGoString

    rng = random.Random(7)
    for exponent in range(-12, 24):
        for _ in range(50):
            value = rng.random() * 10.0**exponent
            for v in (value, -value, round(value), float(round(value))):
                assert go_float(v) == floatToGoString(v), v


def test_gzip_of_a_render_reads_back_as_the_render() -> None:
    import gzip

    for registry in (registry_of(Synthetic()), queue_registry()):
        renderer = Renderer()
        for fmt in ("text", "openmetrics"):
            for _ in range(2):  # the second reuses the kept chunks and their deflate data
                rendered = renderer.pieces(gather(registry), fmt)
                assert gzip.decompress(renderer.gzip(rendered)) == rendered.body()
                assert rendered.body() == render(registry, fmt)


class Shifting:
    """Series whose mappings are replaced or kept, and gauge histograms whose counts move."""

    def __init__(self) -> None:
        self.counts = {"a": 1, "b": 2}
        self.waits = {"x": ([1, 2], 3.0)}
        self.ages = {"a": 10.0, "b": 100.0}
        self.bounds: tuple[float, ...] = (60.0,)
        self.now = 1000.0

    def collect(self) -> Iterator[object]:
        for block in self.blocks():
            yield to_metric_family(block)

    def blocks(self) -> Iterator[Block]:
        counter = COUNTER.block()
        counter.add_all(("acme",), self.counts)
        histogram = HISTOGRAM.block(buckets=self.bounds)
        histogram.add_all(("acme",), self.waits, lambda v: v, static=True)
        aged = GAUGEHISTOGRAM.block(buckets=(60.0, 300.0))
        now = self.now

        def buckets(ts: float) -> tuple[list[float], float]:
            age = now - ts
            return [int(age <= 60), int(age <= 300), 1], age

        aged.add_all(("acme",), self.ages, buckets)
        yield from (counter, histogram, aged)


def test_kept_lines_follow_every_change_of_mapping_bounds_and_counts() -> None:
    shifting = Shifting()
    registry, renderer = registry_of(shifting), Renderer()

    def same_as_prometheus_client() -> None:
        for fmt, expected in (("text", generate_latest), ("openmetrics", openmetrics_latest)):
            assert renderer.render(gather(registry), fmt) == expected(registry)  # type: ignore[arg-type]

    same_as_prometheus_client()
    shifting.now += 45  # "a" crosses 60 s: its bucket lines change, "b"'s are kept
    same_as_prometheus_client()
    shifting.now += 250  # both cross a bound
    same_as_prometheus_client()
    shifting.counts = {"a": 5}  # a new mapping: rendered anew
    same_as_prometheus_client()
    shifting.counts["a"] = 6  # (never done: mappings are replaced) the kept lines stay
    assert b'requests_total{code="a",org="acme"} 5.0' in renderer.render(gather(registry), "text")
    shifting.bounds = (10.0,)  # the same mapping under other bounds: not the kept lines
    shifting.counts = {"a": 6}
    same_as_prometheus_client()


def test_label_values_with_nul_are_formatted_the_slow_way_and_still_right() -> None:
    class Nul:
        def collect(self) -> Iterator[object]:
            for block in self.blocks():
                yield to_metric_family(block)

        def blocks(self) -> Iterator[Block]:
            gauge = GAUGE.block()
            gauge.add_all(("a\x00b",), {"k": 1})
            gauge.add_all(("acme",), {"x\x00y": 2, "plain": 3})
            yield gauge

    registry = registry_of(Nul())
    renderer = Renderer()
    for _ in range(2):
        assert renderer.render(gather(registry), "text") == generate_latest(registry)
