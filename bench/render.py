"""`/metrics` render cost at ~20k and >=150k samples, and `/healthz` while `/metrics` renders.

The queue is synthetic (many work and email types, so the sample count is high) and is built
in-process: the simulator serves only a handful of work types.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import structlog
from prometheus_client import generate_latest

from exporter.aggregation.builder import AggregationOptions, SnapshotBuilder
from exporter.app.runtime import prepare_for_serving
from exporter.app.wiring import build_registry
from exporter.domain.models import Email
from exporter.domain.names import STATES
from exporter.metrics.families import gather
from exporter.metrics.textformat import Renderer
from exporter.polling.poller import Poller, PollTiming
from exporter.polling.store import Store
from exporter.settings import Settings
from exporter.upstream.client import Page
from exporter.upstream.decode import Shape, decode_page
from exporter.web.server import build_app, serve

from .procs import Simulator, _stop, daemon, free_port, wait_http
from .scrape import _peak_rss

ORG = "bench"
# (emails, work types, email types): ~20k samples (the default max_series), and ~160k.
NORMAL = (100_000, 100, 3)
LARGE = (30_000, 320, 10)
PAGE_SIZE = 1000


def synthetic_emails(emails: int, work_types: int, email_types: int, now: float) -> list[Email]:
    """`emails` emails spread evenly over every combination, queued over the last day."""
    rng = random.Random(1)
    types = [f"EmailType{i:02d}" for i in range(email_types)]
    return [
        Email(
            id=str(i),
            state=rng.choice(STATES),
            email_type=types[(i // work_types) % email_types],
            work_type_id=str(1000 + i % work_types),
            work_type_name=f"Work type {i % work_types}",
            queued_time=time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - rng.random() * 86400)
            ),
        )
        for i in range(emails)
    ]


def options(work_types: int) -> AggregationOptions:
    """Aggregation caps wide enough for every synthetic label value and series."""
    return AggregationOptions(max_work_types=work_types, max_series=10**7)


def settings() -> Settings:
    """Default settings, with the series budget out of the way (the point is many series)."""
    return Settings().model_copy(update={"max_series": 10**7})


def synthetic_store(emails: list[Email], work_types: int, now: float) -> Store:
    builder = SnapshotBuilder(options(work_types))
    builder.add(emails)
    store = Store([ORG])
    store.orgs[ORG].record_success(builder.finish(now), 1.0, None, None)
    return store


@dataclass(frozen=True)
class RenderCost:
    """CPU seconds (median) of a fresh render (new snapshot, nothing kept from before), a warm
    one (same snapshot, a later scrape), and prometheus_client's `generate_latest` of the same
    data, which is what the exporter ran on the event loop before."""

    samples: int
    size: int
    fresh: float
    warm: float
    baseline: float

    def per_sample(self, seconds: float) -> float:
        return seconds / self.samples


def render_cost(size: tuple[int, int, int], repeats: int = 5) -> RenderCost:
    """Time the renderer on its thread's CPU clock: blocks gathered and formatted, as a scrape
    does it (CPU time, so other work on a shared machine does not count)."""
    emails, work_types, email_types = size
    now = time.time()
    store = synthetic_store(synthetic_emails(emails, work_types, email_types, now), work_types, now)
    registry = build_registry(store, settings())
    fresh, warm = [], []
    body = b""
    for _ in range(repeats):
        renderer = Renderer()
        started = time.thread_time()
        body = renderer.render(gather(registry), "text")
        fresh.append(time.thread_time() - started)
        started = time.thread_time()
        renderer.render(gather(registry), "text")
        warm.append(time.thread_time() - started)
    started = time.thread_time()
    generate_latest(registry)
    baseline = time.thread_time() - started
    samples = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
    return RenderCost(
        samples, len(body), statistics.median(fresh), statistics.median(warm), baseline
    )


@dataclass(frozen=True)
class Liveness:
    """`/healthz` latency while scrapers fetch `/metrics` flat out, and the server's peak RSS."""

    samples: int
    scrapes: int
    polls: int
    probes: int
    healthz_worst: float
    healthz_p99: float
    metrics_p50: float
    peak_rss: int


class _Pages:
    """The synthetic queue as the API would page it (1000 emails a page, the default): JSON
    bodies, decoded page by page on the loop as the daemon's client does."""

    def __init__(self, emails: list[Email]) -> None:
        total = len(emails)
        self.bodies = [
            json.dumps({"totalItems": total, "items": [_item(e) for e in emails[i : i + PAGE_SIZE]]})
            .encode()
            for i in range(0, total, PAGE_SIZE)
        ]  # fmt: skip
        self.shape = Shape.DOCUMENTED

    async def pages(self) -> AsyncGenerator[Page, None]:
        for n, body in enumerate(self.bodies):
            page = decode_page(body, n * PAGE_SIZE, PAGE_SIZE, shape=self.shape, agents=False)
            self.shape = max(self.shape, page.shape)
            yield page
            await asyncio.sleep(0)  # as if each page had been awaited from the network


def _item(email: Email) -> dict[str, object]:
    fields = {"id": email.id, "state": email.state, "emailType": email.email_type}
    fields |= {"workTypeId": email.work_type_id, "workTypeName": email.work_type_name}
    return {**fields, "queuedTime": email.queued_time}


async def _server(size: tuple[int, int, int], port: int, poll_interval: float) -> None:
    """The exporter's app over a synthetic queue, polled every interval by the daemon's own
    `Poller` (so what runs on the loop is what the daemon runs, and renders are fresh after
    every poll)."""
    emails, work_types, email_types = size
    items = synthetic_emails(emails, work_types, email_types, time.time())
    store = Store([ORG])
    timing = PollTiming(poll_interval=poll_interval, stale_after=max(150.0, 5 * poll_interval))
    poller = Poller(
        store.orgs[ORG],
        _Pages(items),
        _NoAuth(),
        options=options(work_types),
        timing=timing,
        logger=structlog.get_logger("bench"),
    )
    app = build_app(store, build_registry(store, settings()), [poller.run])
    prepare_for_serving()  # as the daemon does
    await serve(app, "127.0.0.1", port)


class _NoAuth:
    """The synthetic queue needs no token."""

    expires_at: float | None = None

    async def token(self) -> str:
        return ""

    def invalidate(self, rejected: str | None = None) -> None:
        pass


@asynccontextmanager
async def server(
    size: tuple[int, int, int], poll_interval: float
) -> AsyncIterator[tuple[str, int]]:
    """`python -m bench.render` serving a synthetic queue; its base URL and pid."""
    port = free_port()
    args = [sys.executable, "-m", "bench.render", "serve", *map(str, (*size, port, poll_interval))]
    # Popen only forks; the fixed argument list comes from this module, not from input.
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)  # noqa: S603, ASYNC220
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(base + "/readyz", proc, within=120)
        yield base, proc.pid
    finally:
        _stop(proc)


async def _probe(base: str, pid: int, seconds: float, scrapers: int) -> Liveness:
    """Probe `/healthz` every 10 ms while `scrapers` clients in another process fetch `/metrics`
    flat out (OpenMetrics, gzip, as Prometheus asks); a separate process, so reading the large
    bodies does not delay the probes here."""
    probes: list[float] = []
    args = [sys.executable, "-m", "bench.render", "scrape", base, str(seconds), str(scrapers)]
    async with aiohttp.ClientSession() as session:
        for _ in range(1200):  # until the first poll is in
            async with session.get(base + "/readyz") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"{base} did not finish its first poll in 120 s")
        async with session.get(base + "/metrics") as resp:
            body = await resp.read()
            polls_before = _polls(body.decode())
        scraping = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            started = time.perf_counter()
            async with session.get(base + "/healthz") as resp:
                await resp.read()
                resp.raise_for_status()
            probes.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
        out, _ = await scraping.communicate()
        async with session.get(base + "/metrics") as resp:
            polls = _polls(await resp.text()) - polls_before
    scraped = json.loads(out)
    probes.sort()
    return Liveness(
        sum(1 for line in body.splitlines() if line and not line.startswith(b"#")),
        scraped["scrapes"],
        polls,
        len(probes),
        probes[-1],
        probes[min(len(probes) - 1, int(0.99 * len(probes)))],
        scraped["p50"],
        _peak_rss(pid) or 0,
    )


async def liveness(
    size: tuple[int, int, int], seconds: float = 10.0, scrapers: int = 4, poll_interval: float = 2.0
) -> Liveness:
    """A synthetic high-cardinality queue, re-aggregated every `poll_interval`, under scrapes."""
    async with server(size, poll_interval) as (base, pid):
        return await _probe(base, pid, seconds, scrapers)


async def daemon_liveness(sim: Simulator, seconds: float = 10.0, scrapers: int = 4) -> Liveness:
    """The real daemon polling `sim` every second (fetch, decode, aggregate), under scrapes
    (`scrapers=0`: the polls alone)."""
    async with daemon(sim, 1.0) as (url, pid):
        return await _probe(url.removesuffix("/metrics"), pid, seconds, scrapers)


def _polls(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("alvaria_emailqueue_polls_total{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def _scrape(base: str, seconds: float, scrapers: int) -> None:
    """Fetch `/metrics` from `scrapers` clients flat out; print how many and the median time."""
    stop = time.monotonic() + seconds
    times: list[float] = []
    headers = {"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"}
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def scraper() -> None:
            while time.monotonic() < stop:
                started = time.perf_counter()
                async with session.get(base + "/metrics", headers=headers) as resp:
                    await resp.read()
                times.append(time.perf_counter() - started)

        await asyncio.gather(*(scraper() for _ in range(scrapers)))
    print(json.dumps({"scrapes": len(times), "p50": statistics.median(times) if times else 0.0}))


def main() -> None:
    """`python -m bench.render serve EMAILS WORK_TYPES EMAIL_TYPES PORT POLL_INTERVAL` or
    `python -m bench.render scrape BASE_URL SECONDS SCRAPERS`: the two sides of `liveness`."""
    if sys.argv[1] == "scrape":
        asyncio.run(_scrape(sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
        return
    emails, work_types, email_types, port = map(int, sys.argv[2:6])
    asyncio.run(_server((emails, work_types, email_types), port, float(sys.argv[6])))


if __name__ == "__main__":
    main()
