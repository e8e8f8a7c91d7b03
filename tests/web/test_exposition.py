"""`/metrics` serving: negotiation, one shared render in a worker thread, a cache headers can't grow."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Generator, Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from prometheus_client.core import GaugeMetricFamily

from exporter.aggregation.builder import AggregationOptions, aggregate
from exporter.metrics.families import Block, Family, Registry
from exporter.polling.store import Store
from exporter.web.exposition import ExpositionCache, accepts_gzip, negotiate
from exporter.web.server import build_app
from tests.fakes import Clock

SLOW = Family.gauge("slow_value", "A value that takes its time to render.", "org", "k")


class CountingCollector:
    """A standard collector (rendered in the worker thread) that counts its collections."""

    def __init__(self) -> None:
        self.renders = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.renders += 1
        yield GaugeMetricFamily(
            "renders", "How often the registry was collected.", value=self.renders
        )


class GatedCollector:
    """A fast collector whose values wait, in the render thread, until the test opens the gate."""

    def __init__(self) -> None:
        self.rendering = threading.Event()
        self.gate = threading.Event()
        self.opened_in_time = False
        self.renders = 0

    def blocks(self) -> Iterator[Block]:
        self.renders += 1
        block = SLOW.block()
        block.add_all(("acme",), {"x": 1.0}, self._wait)
        yield block

    def _wait(self, value: float) -> float:
        self.rendering.set()
        self.opened_in_time = self.gate.wait(timeout=10)
        return value


def setup(collector: object) -> tuple[ExpositionCache, Store, Clock]:
    store, clock = Store(["acme"]), Clock(100.0)
    registry = Registry()
    registry.register(collector)  # type: ignore[arg-type]
    return ExpositionCache(registry, store, max_age=1.0, clock=clock), store, clock


async def test_scrapes_within_a_second_share_one_render() -> None:
    collector = CountingCollector()
    cache, _, clock = setup(collector)
    first = await cache.body("text", False)
    clock.now += 0.9
    assert await cache.body("text", False) is first
    assert collector.renders == 1
    clock.now += 0.1
    assert b"renders 2.0" in await cache.body("text", False)


async def test_a_finished_poll_invalidates_the_render_at_once() -> None:
    collector = CountingCollector()
    cache, store, _ = setup(collector)
    await cache.body("text", False)
    store.orgs["acme"].record_success(
        aggregate([], now=0, options=AggregationOptions()), 0.1, None, None
    )
    await cache.body("text", False)
    assert collector.renders == 2


async def test_formats_are_cached_separately_and_gzipped_once() -> None:
    collector = CountingCollector()
    cache, _, _ = setup(collector)
    om = await cache.body("openmetrics", True)
    assert gzip.decompress(om).endswith(b"# EOF\n")
    assert await cache.body("openmetrics", True) is om
    assert not (await cache.body("text", False)).endswith(b"# EOF\n")
    assert collector.renders == 2


async def test_concurrent_scrapes_share_one_render_in_flight() -> None:
    collector = GatedCollector()
    cache, store, clock = setup(collector)
    scrapes = [asyncio.create_task(cache.body("text", False)) for _ in range(10)]
    await asyncio.to_thread(collector.rendering.wait, 10)
    clock.now += 5  # even past max_age and a new poll, the render in flight is shared
    store.orgs["acme"].record_failure("timeout", "t", 1.0, None)
    scrapes.append(asyncio.create_task(cache.body("text", False)))
    collector.gate.set()
    bodies = await asyncio.gather(*scrapes)
    assert collector.renders == 1 and all(b is bodies[0] for b in bodies)
    assert b'slow_value{k="x",org="acme"} 1.0' in bodies[0]


async def test_healthz_answers_while_metrics_renders() -> None:
    """The render runs in a worker thread: /healthz is served while the render is blocked."""
    collector = GatedCollector()
    registry = Registry()
    registry.register(collector)  # type: ignore[arg-type]
    async with TestClient(TestServer(build_app(Store(["acme"]), registry))) as client:
        scrape = asyncio.create_task(client.get("/metrics"))
        await asyncio.to_thread(collector.rendering.wait, 10)
        assert collector.rendering.is_set()
        health = await client.get("/healthz")
        assert health.status == 200
        collector.gate.set()  # opened only after /healthz answered mid-render
        metrics = await scrape
        assert metrics.status == 200 and collector.opened_in_time
        assert b"slow_value" in await metrics.read()


class SteppedCollector:
    """A fast collector read in steps, noting what the event loop did between them."""

    def __init__(self, loop_turns: list[int]) -> None:
        self.loop_turns = loop_turns
        self.seen: list[int] = []

    def blocks(self) -> Iterator[Block]:
        raise AssertionError("read in steps, not at once")

    def steps(self) -> Generator[None, None, list[Block]]:
        for org in ("a", "b", "c"):
            self.seen.append(len(self.loop_turns))
            if org != "c":
                yield
        block = SLOW.block()
        block.add(("c", "x"), 1.0)
        return [block]


async def test_the_loop_runs_between_the_steps_of_a_scrape() -> None:
    # With hundreds of organisations, reading the store at once held /healthz up 30-120 ms.
    turns: list[int] = []

    async def other_requests() -> None:
        while True:
            turns.append(1)
            await asyncio.sleep(0)

    collector = SteppedCollector(turns)
    cache, _, _ = setup(collector)
    others = asyncio.create_task(other_requests())
    try:
        body = await cache.body("text", False)
    finally:
        others.cancel()
    assert b'slow_value{k="x",org="c"} 1.0' in body
    assert collector.seen[0] < collector.seen[1] < collector.seen[2]


async def test_distinct_headers_cannot_grow_the_cache() -> None:
    collector = CountingCollector()
    cache, _, _ = setup(collector)
    for i in range(2000):
        request = make_mocked_request(
            "GET",
            "/metrics",
            headers={
                "Accept": f"application/openmetrics-text; version=1.0.{i}, text/plain;q=0.{i % 9}",
                "Accept-Encoding": f"gzip;q=0.{i % 9 + 1}, br, x-{i}",
            },
        )
        await cache.handle(request)
    assert cache.bodies_kept() <= 4
    assert collector.renders == 1  # one render (within max_age) served every header variant


async def test_a_failed_render_is_not_kept() -> None:
    class Failing:
        calls = 0

        def collect(self) -> Iterator[GaugeMetricFamily]:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("bug")
            yield GaugeMetricFamily("fine", "Fine now.", value=1)

    cache, _, _ = setup(Failing())
    with pytest.raises(RuntimeError):
        await cache.body("text", False)
    assert b"fine 1.0" in await cache.body("text", False)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", "text"),
        ("*/*", "text"),
        ("text/plain", "text"),
        ("application/json", "text"),
        ("application/openmetrics-text", "openmetrics"),
        ("application/openmetrics-text; version=1.0.0", "openmetrics"),
        ("application/openmetrics-text; version=0.0.1", "text"),
        ("application/openmetrics-text; version=2.0.0", "text"),
        ("application/openmetrics-text;q=0, text/plain", "text"),
        ("application/openmetrics-text;q=0", "text"),
        ("text/plain;q=0, */*", "openmetrics"),
        ("text/plain;q=0.5, application/openmetrics-text;q=0.9", "openmetrics"),
        ("text/plain;q=0.9, application/openmetrics-text;q=0.5", "text"),
        ("application/openmetrics-text;q=0, */*;q=1", "text"),
        ("application/openmetrics-text;q=bogus, text/plain", "text"),
        (
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
            "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            "openmetrics",
        ),
        ("text/plain;q=0, application/openmetrics-text;q=0", None),
    ],
)
def test_negotiation_honours_q(accept: str, expected: str | None) -> None:
    assert negotiate(accept) == expected


def test_accept_encoding_parsing() -> None:
    assert accepts_gzip("gzip")
    assert accepts_gzip("deflate, GZIP;q=0.5")
    assert accepts_gzip("br, *")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("gzip;q=0, *")
    assert not accepts_gzip("identity")
    assert not accepts_gzip("")


async def test_metrics_responses_vary_by_accept_and_encoding() -> None:
    async with TestClient(TestServer(build_app(Store(["acme"]), Registry()))) as client:
        text = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text;q=0, text/plain"}
        )
        assert text.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert text.headers["Vary"] == "Accept, Accept-Encoding"
        refused = await client.get(
            "/metrics", headers={"Accept": "text/plain;q=0, application/openmetrics-text;q=0"}
        )
        assert refused.status == 406 and refused.headers["Vary"] == "Accept, Accept-Encoding"
