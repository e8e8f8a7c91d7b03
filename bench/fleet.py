"""Many organisations: 200 organisations x 2,000 emails from the multi-org simulator, polled by
one exporter process and then by three shard processes (`--shard 0..2 --total-shards 3`).

Per process: CPU seconds per poll round (user + system from /proc, over several rounds once
every organisation has been polled), peak RSS (VmHWM), the time to answer `GET /metrics` (median
and worst of scrapes every 2 s) and the worst `/healthz` latency (probed every 50 ms) while the
polls run. The simulator is its own process, so its CPU is not counted.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

from .procs import BIN, CLIENT_ID, CLIENT_SECRET, PAGE_CAP, _stop, free_port, wait_http

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Process:
    """What one exporter process cost."""

    shard: int
    targets: int
    cpu_per_round: float
    peak_rss: int
    metrics_median: float
    metrics_worst: float
    healthz_worst: float
    samples: int  # lines of the last /metrics body that are samples


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


async def _polled(session: aiohttp.ClientSession, base: str) -> tuple[int, int]:
    """(organisations polled at least once, organisations configured) from /metrics."""
    async with session.get(base + "/metrics") as resp:
        text = await resp.text()
    polls = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("alvaria_emailqueue_polls_total{")
    ]
    targets = next(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("alvaria_emailqueue_targets ")
    )
    return sum(1 for p in polls if p >= 1), targets


async def _measure(pid: int, base: str, shard: int, interval: float, rounds: int) -> Process:
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 120
        while True:
            polled, targets = await _polled(session, base)
            if polled == targets or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        healthz: list[float] = []
        metrics: list[float] = []
        stop = time.monotonic() + rounds * interval

        last = [b""]

        async def probe(path: str, every: float, out: list[float]) -> None:
            while time.monotonic() < stop:
                started = time.monotonic()
                async with session.get(base + path) as resp:
                    last[0] = await resp.read() if path == "/metrics" else last[0]
                out.append(time.monotonic() - started)
                await asyncio.sleep(every)

        cpu = _cpu_seconds(pid)
        await asyncio.gather(probe("/healthz", 0.05, healthz), probe("/metrics", 2.0, metrics))
        cpu = _cpu_seconds(pid) - cpu
    return Process(
        shard=shard,
        targets=targets,
        cpu_per_round=cpu / rounds,
        peak_rss=_peak_rss(pid),
        metrics_median=statistics.median(metrics),
        metrics_worst=max(metrics),
        healthz_worst=max(healthz),
        samples=sum(1 for line in last[0].splitlines() if line and not line.startswith(b"#")),
    )


async def _run(config: Path, shards: int, interval: float, rounds: int) -> Run:
    procs: list[tuple[int, subprocess.Popen[bytes], str]] = []
    try:
        for shard in range(shards):
            port = free_port()
            args = [
                str(BIN / "alvaria-emailqueue-exporter"),
                *("--config-file", str(config), "--listen-address", f"127.0.0.1:{port}"),
            ]
            if shards > 1:
                args += ["--shard", str(shard), "--total-shards", str(shards)]
            env = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
            proc = subprocess.Popen(  # noqa: S603, ASYNC220 -- fixed arguments
                args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            base = f"http://127.0.0.1:{port}"
            procs.append((shard, proc, base))
        for _, proc, base in procs:
            await wait_http(base + "/healthz", proc, within=30)
        measured = await asyncio.gather(
            *(_measure(proc.pid, base, shard, interval, rounds) for shard, proc, base in procs)
        )
    finally:
        for _, proc, _ in procs:
            _stop(proc)
    name = "one process" if shards == 1 else f"{shards} shards"
    return Run(name, list(measured))


async def measure(
    orgs: int = 200, emails: int = 2000, interval: float = 10.0, rounds: int = 3
) -> FleetResult:
    """One process, then three shards, over the same simulator and config."""
    result = FleetResult(orgs, emails, interval, rounds)
    load_before = os.getloadavg()[0]
    async with multi_org_simulator(orgs, emails) as base:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.yaml"
            write_config(config, base, orgs, interval)
            for shards in (1, 3):
                result.runs.append(await _run(config, shards, interval, rounds))
    result.load = (load_before, os.getloadavg()[0])
    return result


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def table(result: FleetResult) -> str:
    """The rows for the README and deploy/README sizing."""
    head = (
        f"\n### {result.orgs} organisations x {result.emails:,} emails "
        f"(poll every {result.interval:g} s, {result.rounds} rounds measured; load average "
        f"{result.load[0]:.1f} → {result.load[1]:.1f} on {os.cpu_count()} cores)\n\n"
        "| layout | process | organisations | samples | CPU per poll round | peak RSS "
        "| GET /metrics median / worst | worst /healthz |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for run in result.runs:
        for p in run.processes:
            label = "—" if len(run.processes) == 1 else f"shard {p.shard}"
            rows.append(
                f"| {run.name} | {label} | {p.targets} | {p.samples:,} | {p.cpu_per_round:.2f} s "
                f"| {p.peak_rss / 2**20:.0f} MiB | {_ms(p.metrics_median)} / {_ms(p.metrics_worst)} "
                f"| {_ms(p.healthz_worst)} |"
            )
    one = result.runs[0].processes[0]
    per_org_cpu = one.cpu_per_round / max(1, one.targets)
    rows.append(
        f"\nPer organisation of {result.emails:,} emails (one process): "
        f"{per_org_cpu * 1000:.1f} ms CPU per poll and about "
        f"{_per_org_rss(result) / 2**20:.2f} MiB of memory."
    )
    return head + "\n".join(rows) + "\n"


def _per_org_rss(result: FleetResult) -> float:
    """Memory per organisation: the slope between the single process and the shards."""
    one = result.runs[0].processes[0]
    shards = result.runs[-1].processes
    points = [(p.targets, p.peak_rss) for p in shards] + [(one.targets, one.peak_rss)]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    if len(set(xs)) < 2:
        return one.peak_rss / max(1, one.targets)
    slope, _ = statistics.linear_regression(xs, ys)
    return max(0.0, slope)


def verdicts(result: FleetResult) -> list[tuple[str, bool]]:
    """Sharding pays: each shard costs about its share; nothing stalls the event loop."""
    one = result.runs[0].processes[0]
    shards = result.runs[-1].processes
    cpu_sum = sum(p.cpu_per_round for p in shards)
    return [
        ("fleet: every organisation polled by exactly one shard",
         sum(p.targets for p in shards) == one.targets == result.orgs),
        ("fleet: 3 shards together use at most 1.5x the CPU of one process",
         cpu_sum <= 1.5 * one.cpu_per_round),
        ("fleet: every shard's peak RSS is below the single process's",
         all(p.peak_rss < one.peak_rss for p in shards)),
        ("fleet: worst /healthz under 1 s while polling",
         all(p.healthz_worst < 1.0 for run in result.runs for p in run.processes)),
    ]  # fmt: skip
