"""Many organisations against one big one: 200 organisations x 2,000 emails from the multi-org
simulator, polled by one exporter process and then by three shard processes
(`--shard 0..2 --total-shards 3`), next to one organisation of 100,000 emails.

Per process, in phases (the simulators are processes of their own, so their CPU is not counted):

- **polls only**: CPU seconds per poll round (user + system from /proc over several rounds once
  every organisation has been polled), with nothing else asking the daemon anything. The single
  organisation's daemon polls at the same time as the fleet's, so the two ratios see the same
  machine;
- **fresh scrapes**: `GET /metrics` as Prometheus asks for it (OpenMetrics, gzip) every 2 s
  while the polls go on, so every scrape renders what polls changed since the last one: its
  median and worst time until the whole (gzipped) body is in, per sample;
- **four scrapers**: four clients in another process fetch `/metrics` the same way flat out
  while `/healthz` is probed every 10 ms: the worst `/healthz`.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

from .procs import (
    BIN,
    CLIENT_ID,
    CLIENT_SECRET,
    PAGE_CAP,
    Simulator,
    _stop,
    exporter_args,
    free_port,
    simulator,
    wait_http,
)
from .steady import poll_lines

TICKS = os.sysconf("SC_CLK_TCK")
SCRAPERS = 4
# The single organisation the fleet is compared with.
BIG = 100_000


@dataclass
class Process:
    """What one exporter process cost."""

    shard: int
    targets: int
    emails: int  # emails polled per round
    cpu_per_round: float  # polls only
    peak_rss: int
    metrics_median: float  # GET /metrics, gzip, every 2 s while polling
    metrics_worst: float
    samples: int  # lines of the last /metrics body that are samples
    # CPU seconds a scrape cost the process (mean; the polls' share of the window taken out)
    metrics_cpu: float = 0.0
    healthz_worst: float | None = None  # with four scrapers; None when not measured

    @property
    def us_per_email(self) -> float:
        return self.cpu_per_round / max(1, self.emails) * 1e6

    @property
    def us_per_sample(self) -> float:
        """Time until the body is in, per sample."""
        return self.metrics_median / max(1, self.samples) * 1e6

    @property
    def cpu_us_per_sample(self) -> float:
        return self.metrics_cpu / max(1, self.samples) * 1e6


@dataclass
class Run:
    """One layout: a single process, or the shards together."""

    name: str
    processes: list[Process] = field(default_factory=list)


@dataclass
class FleetResult:
    orgs: int
    emails: int
    interval: float
    rounds: int
    runs: list[Run] = field(default_factory=list)
    single: Process | None = None  # one organisation of `BIG` emails
    # The machine's 1-minute load average before and after: on a shared machine, latencies
    # grow with it.
    load: tuple[float, float] = (0.0, 0.0)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@asynccontextmanager
async def multi_org_simulator(orgs: int, emails: int) -> AsyncIterator[str]:
    """`--orgs` organisations, each with its own key, serving the same static list."""
    port = free_port()
    args = [
        str(BIN / "alvaria-emailqueue-simulator"),
        *("--listen-address", f"127.0.0.1:{port}", "--scenario", "large", "--seed", "1"),
        *("--emails", str(emails), "--page-cap", str(PAGE_CAP), "--orgs", str(orgs)),
        *("--api-key-per-org", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603, ASYNC220 -- fixed arguments
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(base + "/", proc, within=120)
        yield base
    finally:
        _stop(proc)


def write_config(path: Path, base: str, orgs: int, interval: float) -> None:
    targets = [
        {"org_id": f"org-{i:04d}", "api_key": f"key-org-{i:04d}"} for i in range(1, orgs + 1)
    ]
    config = {
        "poll_interval": f"{interval}s",
        "page_size": PAGE_CAP,
        "log_level": "warning",
        "api_url": base,
        "token_url": base + "/tokenservice/oauth2/access_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "targets": targets,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


@dataclass
class _Daemon:
    pid: int
    base: str
    shard: int = 0
    emails_per_org: int = 0
    log: Path | None = None  # its JSON log, when it logs each poll


@asynccontextmanager
async def _daemon(
    args: Sequence[str], port: int, shard: int, emails: int, log: Path | None = None
) -> AsyncIterator[_Daemon]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
    env["ALVARIA_CLIENT_SECRET"] = CLIENT_SECRET
    with log.open("wb") if log else open(os.devnull, "wb") as out:  # noqa: ASYNC230 -- once
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=out)  # noqa: S603, ASYNC220 -- fixed arguments
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_http(base + "/healthz", proc, within=30)
            yield _Daemon(proc.pid, base, shard, emails, log)
        finally:
            _stop(proc)


def _single_args(sim: Simulator, port: int, interval: float) -> list[str]:
    """The single organisation's daemon, logging each poll (JSON) so its CPU can be measured
    from one poll to another: its polls are bursts, a fixed window would cut them."""
    args = list(exporter_args(sim, port, interval))
    args[args.index("--log-level") + 1] = "info"
    return [*args, "--log-format", "json"]


async def _next_polls(daemon: _Daemon, count: int, within: float) -> None:
    """Until `daemon` has logged `count` more successful polls."""
    assert daemon.log is not None
    seen = len(poll_lines(daemon.log))
    for _ in range(int(within / 0.02)):
        if len(poll_lines(daemon.log)) >= seen + count:
            return
        await asyncio.sleep(0.02)


def _values(text: str, prefix: str) -> list[float]:
    return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)]


async def _all_polled(session: aiohttp.ClientSession, base: str, within: float = 120) -> int:
    """Waits until every organisation was polled successfully; their number."""
    deadline = time.monotonic() + within
    while True:
        async with session.get(base + "/metrics") as resp:
            text = await resp.text()
        ups = _values(text, "alvaria_emailqueue_up{")
        targets = int(_values(text, "alvaria_emailqueue_targets ")[0])
        if (len(ups) == targets and all(ups)) or time.monotonic() > deadline:
            return targets
        await asyncio.sleep(0.5)


# As Prometheus asks: OpenMetrics, gzip (the body is timed as it arrives, not inflated).
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text; version=1.0.0",
    "Accept-Encoding": "gzip",
}


async def _fresh_scrapes(base: str, seconds: float) -> tuple[list[float], int]:
    """GET /metrics every 2 s for `seconds` (at least once): the times, and the last body's
    samples; ends 2 s after the last scrape."""
    times: list[float] = []
    body, encoded = b"", False
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        while not times or time.monotonic() < stop:
            started = time.perf_counter()
            async with session.get(base + "/metrics", headers=SCRAPE_HEADERS) as resp:
                body = await resp.read()
                encoded = resp.headers.get("Content-Encoding") == "gzip"
            times.append(time.perf_counter() - started)
            await asyncio.sleep(2.0)
    text = gzip.decompress(body) if encoded else body
    samples = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    return times, samples


async def _healthz_under_scrapers(
    session: aiohttp.ClientSession, base: str, seconds: float
) -> float:
    """The worst `/healthz` (probed every 10 ms) while `SCRAPERS` clients in another process
    fetch /metrics flat out (`bench.render`'s scrapers: reading large bodies there does not
    delay the probes here)."""
    args = [sys.executable, "-m", "bench.render", "scrape", base, str(seconds), str(SCRAPERS)]
    scraping = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL)
    worst = 0.0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        started = time.perf_counter()
        async with session.get(base + "/healthz") as resp:
            await resp.read()
        worst = max(worst, time.perf_counter() - started)
        await asyncio.sleep(0.01)
    await scraping.wait()
    return worst


@dataclass(frozen=True)
class Windows:
    """How long each phase lasts."""

    interval: float
    rounds: int  # poll rounds of the CPU phase
    scrapes: float  # seconds of fresh scrapes
    healthz: float  # seconds of four scrapers (0: skipped)


async def _scrape_phases(daemon: _Daemon, targets: int, cpu: float, w: Windows) -> Process:
    """The scrape phases of a daemon whose polls-only CPU (per round) was measured."""
    # One scrape first: what the polls-only phase left to render is not this phase's cost.
    await _fresh_scrapes(daemon.base, 0.0)
    started, cpu_before = time.monotonic(), _cpu_seconds(daemon.pid)
    times, samples = await _fresh_scrapes(daemon.base, w.scrapes)
    polls = cpu / w.interval * (time.monotonic() - started)  # the polls' share meanwhile
    scrape_cpu = max(0.0, _cpu_seconds(daemon.pid) - cpu_before - polls) / len(times)
    async with aiohttp.ClientSession() as session:
        healthz = None
        if w.healthz > 0:
            healthz = await _healthz_under_scrapers(session, daemon.base, w.healthz)
    return Process(
        shard=daemon.shard,
        targets=targets,
        emails=targets * daemon.emails_per_org,
        cpu_per_round=cpu,
        peak_rss=_peak_rss(daemon.pid),
        metrics_median=statistics.median(times),
        metrics_worst=max(times),
        samples=samples,
        metrics_cpu=scrape_cpu,
        healthz_worst=healthz,
    )


async def _polled_then_cpu(daemons: Sequence[_Daemon], w: Windows) -> list[tuple[int, float]]:
    """(organisations, CPU per poll round) of each daemon, measured over the same window once
    every daemon has polled all its organisations: `w.rounds` intervals, or, when the first
    daemon logs its polls, from the end of one of its polls to the end of its `w.rounds`-th
    next (the others' rounds counted in intervals of that window)."""
    async with aiohttp.ClientSession() as session:
        targets = await asyncio.gather(*(_all_polled(session, d.base) for d in daemons))
    paced = daemons[0]
    if paced.log is not None:
        await _next_polls(paced, 1, within=3 * w.interval)
    started = time.monotonic()
    before = [_cpu_seconds(d.pid) for d in daemons]
    if paced.log is not None:
        await _next_polls(paced, w.rounds, within=3 * w.rounds * w.interval)
    else:
        await asyncio.sleep(w.rounds * w.interval)
    rounds = (time.monotonic() - started) / w.interval
    cpu = [_cpu_seconds(d.pid) - b for d, b in zip(daemons, before, strict=True)]
    per_round = [c / rounds for c in cpu]
    if paced.log is not None:
        per_round[0] = cpu[0] / w.rounds  # its own polls, whatever the window's length
    return list(zip(targets, per_round, strict=True))


def _exporter(config: Path, port: int, *extra: str) -> list[str]:
    return [
        str(BIN / "alvaria-emailqueue-exporter"),
        *("--config-file", str(config), "--listen-address", f"127.0.0.1:{port}", *extra),
    ]


async def _one_process(
    config: Path, emails: int, big: int, w: Windows, result: FleetResult
) -> None:
    tmp = config.parent
    """The fleet in one process, side by side with one organisation of `big` emails."""
    port = free_port()
    async with _daemon(_exporter(config, port), port, 0, emails) as fleet:
        async with simulator(big) as sim:
            port = free_port()
            log = Path(tmp) / "single.log"
            async with _daemon(_single_args(sim, port, w.interval), port, 0, big, log) as single:
                (one, one_cpu), (orgs, fleet_cpu) = await _polled_then_cpu([single, fleet], w)
                quiet = Windows(w.interval, w.rounds, w.scrapes / 2, w.healthz)
                result.single = await _scrape_phases(single, one, one_cpu, quiet)
        # The fleet's scrapes alone: the single organisation and its simulator are gone.
        process = await _scrape_phases(fleet, orgs, fleet_cpu, w)
        result.runs.append(Run("one process", [process]))


async def _shards(config: Path, emails: int, shards: int, w: Windows) -> Run:
    async with AsyncExitStack() as stack:
        daemons = []
        for shard in range(shards):
            port = free_port()
            args = _exporter(config, port, "--shard", str(shard), "--total-shards", str(shards))
            daemons.append(await stack.enter_async_context(_daemon(args, port, shard, emails)))
        cpu = await _polled_then_cpu(daemons, w)
        no_probe = Windows(w.interval, w.rounds, w.scrapes, 0.0)
        measured = await asyncio.gather(
            *(_scrape_phases(d, t, c, no_probe) for d, (t, c) in zip(daemons, cpu, strict=True))
        )
    return Run(f"{shards} shards", list(measured))


async def measure(
    orgs: int = 200,
    emails: int = 2000,
    interval: float = 10.0,
    rounds: int = 3,
    big: int = BIG,
) -> FleetResult:
    """The fleet in one process next to one big organisation, then in three shards."""
    result = FleetResult(orgs, emails, interval, rounds)
    load_before = os.getloadavg()[0]
    w = Windows(interval, rounds, scrapes=2 * interval, healthz=interval)
    async with multi_org_simulator(orgs, emails) as base:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.yaml"
            write_config(config, base, orgs, interval)
            await _one_process(config, emails, big, w, result)
            result.runs.append(await _shards(config, emails, 3, w))
    result.load = (load_before, os.getloadavg()[0])
    return result
