"""`/metrics` costs: render time and size for 100 work types, and latency under concurrent scrapes."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from exporter.aggregation.builder import AggregationOptions, SnapshotBuilder
from exporter.app.wiring import build_registry
from exporter.domain.models import Email
from exporter.domain.names import STATES
from exporter.metrics.textformat import render as render_body
from exporter.polling.store import Store
from exporter.settings import Settings

from .procs import Simulator, daemon

EMAIL_TYPES = ("InboundEmail", "CampaignOutboundEmail", "ManualOutboundEmail")


@dataclass(frozen=True)
class Render:
    """Median time of one fresh render of the body, and the exposition's size and series count."""

    work_types: int
    seconds: float
    size: int
    lines: int


def render(work_types: int = 100, emails: int = 100_000, repeats: int = 20) -> Render:
    """Render a snapshot of `emails` spread over `work_types` work types and every state."""
    rng = random.Random(1)
    now = time.time()
    items = [
        Email(
            id=str(i),
            state=rng.choice(STATES),
            email_type=rng.choice(EMAIL_TYPES),
            work_type_id=str(100 + i % work_types),
            work_type_name=f"Work type {i % work_types}",
            queued_time=time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - rng.random() * 86400)
            ),
        )
        for i in range(emails)
    ]
    builder = SnapshotBuilder(AggregationOptions())
    builder.add(items)
    store = Store(["bench"])
    store.orgs["bench"].record_success(builder.finish(now), 1.0, None, None)
    registry = build_registry(store, Settings())
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        body = render_body(registry)
        times.append(time.perf_counter() - started)
    lines = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
    return Render(work_types, statistics.median(times), len(body), lines)


@dataclass(frozen=True)
class Scrapes:
    """Latency percentiles of scrapes taken while the daemon polled, and its peak RSS."""

    count: int
    p50: float
    p90: float
    p99: float
    polls: int
    peak_rss: int


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _peak_rss(pid: int) -> int | None:
    """The kernel's high-water mark of the process's resident set (Linux), in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


async def _polls_done(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith("alvaria_emailqueue_polls_total{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def _wait_polls(session: aiohttp.ClientSession, url: str, count: int) -> int:
    """Until the daemon has completed `count` polls; the number completed."""
    deadline = time.monotonic() + 60
    while (done := await _polls_done(session, url)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the exporter daemon did not complete {count} polls in 60 s")
        await asyncio.sleep(0.1)
    return done


async def daemon_peak_rss(sim: Simulator, polls: int = 3) -> int:
    """Peak RSS of a daemon that polled `sim` `polls` times back to back, unscraped."""
    async with daemon(sim, 1.0) as (url, pid), aiohttp.ClientSession() as session:
        await _wait_polls(session, url, polls)
        return _peak_rss(pid) or psutil.Process(pid).memory_info().rss


async def scrape_under_polls(
    sim: Simulator, scrapers: int = 20, seconds: float = 10.0, poll_interval: float = 1.0
) -> Scrapes:
    """Run the daemon polling every `poll_interval`, and `scrapers` clients scraping flat out."""
    async with daemon(sim, poll_interval) as (url, pid), aiohttp.ClientSession() as session:
        process = psutil.Process(pid)
        before = await _wait_polls(session, url, 2)  # a warm-up poll, then steady state
        latencies: list[float] = []
        sampled_rss = 0
        stop = time.monotonic() + seconds

        async def scraper() -> None:
            while time.monotonic() < stop:
                started = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    resp.raise_for_status()
                latencies.append(time.perf_counter() - started)

        async def sampler() -> None:
            nonlocal sampled_rss
            while time.monotonic() < stop:
                sampled_rss = max(sampled_rss, process.memory_info().rss)
                await asyncio.sleep(0.02)

        await asyncio.gather(sampler(), *(scraper() for _ in range(scrapers)))
        polls = await _polls_done(session, url) - before
        peak = _peak_rss(pid) or sampled_rss
    latencies.sort()
    return Scrapes(
        len(latencies),
        _percentile(latencies, 0.5),
        _percentile(latencies, 0.9),
        _percentile(latencies, 0.99),
        polls,
        peak,
    )
