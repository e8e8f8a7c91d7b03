"""Shared renders of /metrics: at most one per second, a fresh one after every poll."""

from __future__ import annotations

import gzip

from prometheus_client import CollectorRegistry

from exporter.aggregate import AggregationOptions, aggregate
from exporter.exposition import ExpositionCache
from exporter.store import Store
from tests.fakes import Clock


class CountingCollector:
    def __init__(self) -> None:
        self.renders = 0

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        self.renders += 1
        yield GaugeMetricFamily(
            "renders", "How often the registry was collected.", value=self.renders
        )


def setup() -> tuple[ExpositionCache, CountingCollector, Store, Clock]:
    store, clock, collector = Store(["acme"]), Clock(100.0), CountingCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return ExpositionCache(registry, store, max_age=1.0, clock=clock), collector, store, clock


def test_scrapes_within_a_second_share_one_render() -> None:
    cache, collector, _, clock = setup()
    first = cache.render("", gzip_ok=False)
    clock.now += 0.9
    assert cache.render("", gzip_ok=False) == first
    assert collector.renders == 1
    clock.now += 0.1
    assert b"renders 2.0" in cache.render("", gzip_ok=False)[0]


def test_a_finished_poll_invalidates_the_render_at_once() -> None:
    cache, collector, store, _ = setup()
    cache.render("", gzip_ok=False)
    store.orgs["acme"].record_success(
        aggregate([], now=0, options=AggregationOptions()), 0.1, None, None
    )
    cache.render("", gzip_ok=False)
    assert collector.renders == 2


def test_formats_are_cached_separately_and_gzip_once() -> None:
    cache, collector, _, _ = setup()
    _, text_type, _ = cache.render("text/plain", gzip_ok=False)
    om, om_type, zipped = cache.render("application/openmetrics-text; version=1.0.0", gzip_ok=True)
    assert text_type.startswith("text/plain") and om_type.startswith("application/openmetrics-text")
    assert zipped and gzip.decompress(om).endswith(b"# EOF\n")
    again, _, _ = cache.render("application/openmetrics-text; version=1.0.0", gzip_ok=True)
    assert again is om
    assert collector.renders == 2


def test_accept_encoding_parsing() -> None:
    from exporter.exposition import accepts_gzip

    assert accepts_gzip("gzip")
    assert accepts_gzip("deflate, GZIP;q=0.5")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("identity")
    assert not accepts_gzip("")
