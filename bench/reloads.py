"""Fleet scale and reload storm: 300 organisations x 1,000 service-level rules in one exporter.

What the process must do with a configuration of that size (issue 24's bounds):

- start: listening, and every organisation's poller running (`started` in the log), in < 10 s;
- `/healthz` never above 100 ms, from the first answer to the end (probed every 20 ms);
- a reload that changes a service-level setting answers in < 2 s, keeps every counter;
- a storm of 200 concurrent `POST /-/reload` and 50 SIGHUPs: every POST answered, at most a few
  reloads run (they coalesce), `/healthz` still within bounds, counters never go back;
- SIGTERM: the process exits in < 1 s.

The simulator (`--orgs`, each with its own API key), the exporter and the `/healthz` prober are
child processes; this one measures from outside. `python -m bench.reloads [--orgs 300 --rules 1000]`, or as part
of `python -m bench.soak`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

import aiohttp
import yaml

from bench.fleet import multi_org_simulator
from bench.procs import BIN, CLIENT_ID, CLIENT_SECRET, PAGE_CAP, _stop, free_port

START_LIMIT = 10.0
HEALTHZ_LIMIT = 0.100
RELOAD_LIMIT = 2.0
STOP_LIMIT = 1.0
# Reloads run for the storm's 250 requests: one at a time, each request joining the next one, so
# about the storm's length over one reload's (half a second of SIGHUPs), never one per request.
STORM_RELOADS = 10
POLLS = "alvaria_emailqueue_polls_total{"


class EventLike(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class Probe:
    """`/healthz` latencies from outside, every 20 ms, while the phases run."""

    latencies: list[tuple[float, float]] = field(default_factory=list)  # (when, seconds)
    failures: list[str] = field(default_factory=list)

    def worst(self, since: float = 0.0) -> float:
        return max((s for at, s in self.latencies if at >= since), default=float("inf"))

    def slowest(self, origin: float, count: int = 3) -> str:
        """The slowest probes, with when they started (seconds after `origin`)."""
        top = sorted(self.latencies, key=lambda p: p[1], reverse=True)[:count]
        return ", ".join(f"{s * 1000:.0f} ms at {at - origin:.1f} s" for at, s in top)


@dataclass
class ReloadResult:
    orgs: int
    rules: int
    listening: float = float("inf")  # seconds from spawn to the first /healthz answer
    started: float = float("inf")  # ... to every poller running
    ready: float = float("inf")  # ... to /readyz 200 (every first poll done; they are spread)
    healthz_worst: float = float("inf")
    reload_seconds: float = float("inf")
    unchanged_reload_seconds: float = float("inf")
    storm_posts: int = 0
    storm_ok: int = 0
    storm_reloads: int = 0
    storm_seconds: float = float("inf")
    counters_kept: bool = False
    stop_seconds: float = float("inf")
    healthz_failures: list[str] = field(default_factory=list)
    healthz_slowest: str = ""
    marks: list[tuple[str, float]] = field(default_factory=list)  # (phase, monotonic start)
    notes: list[str] = field(default_factory=list)


def _text(log: Path) -> str:
    """The exporter's log so far (small: a read takes well under a millisecond)."""
    return log.read_text(encoding="utf-8", errors="replace")


def write_config(path: Path, base: str, orgs: int, rules: int, target: str = "8h") -> None:
    config = {
        "poll_interval": "30s",
        "page_size": PAGE_CAP,
        "log_format": "json",
        "web_enable_lifecycle": True,
        "api_url": base,
        "token_url": base + "/tokenservice/oauth2/access_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "service_level_target": target,
        "service_levels": [
            {
                "match": {"work_type": f"(?:Queue|Team) {i}(?: .*)?", "email_type": "Inbound.*"},
                "target": f"{1 + i % 8}h",
                "warning": "15m",
            }
            for i in range(rules)
        ],
        "targets": [
            {"org_id": f"org-{i:04d}", "api_key": f"key-org-{i:04d}"} for i in range(1, orgs + 1)
        ],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


async def _probe(base: str, probe: Probe, stop: EventLike) -> None:
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            began = time.monotonic()
            try:
                timeout = aiohttp.ClientTimeout(total=2)
                async with session.get(base + "/healthz", timeout=timeout) as r:
                    await r.read()
                    if r.status == 200:
                        probe.latencies.append((began, time.monotonic() - began))
                    else:
                        probe.failures.append(f"{r.status} at {began:.1f}")
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if probe.latencies:  # before the first answer the port is simply not open yet
                    probe.failures.append(f"{type(exc).__name__} at {began:.1f}")
            await asyncio.sleep(0.02)


def _probe_process(base: str, stop: EventLike, results: Connection) -> None:
    """The prober's process: probe until `stop`, then send what was measured."""
    probe = Probe()
    asyncio.run(_probe(base, probe, stop))
    results.send((probe.latencies, probe.failures))
    results.close()


@dataclass
class Prober:
    """The prober in a process of its own. A thread of this process would share its GIL, so
    what this process does meanwhile (decoding and parsing a 65 MB `/metrics` body takes
    0.2 s here, in C calls that hold the GIL) would be counted as the exporter's latency: the
    in-process prober saw stalls of 96-139 ms while one in another process saw none."""

    base: str
    probe: Probe = field(default_factory=Probe)

    def __post_init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # not a fork of a running event loop
        self._stop = context.Event()
        self._results, sending = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_probe_process, args=(self.base, self._stop, sending), daemon=True
        )
        self._process.start()
        sending.close()

    def finish(self) -> Probe:
        """Stop probing; what was measured (once stopped, the same)."""
        if self._stop.is_set():
            return self.probe
        self._stop.set()
        if self._results.poll(10):
            self.probe.latencies, self.probe.failures = self._results.recv()
        else:
            self.probe.failures.append("the prober sent no results")
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
        return self.probe


async def _polls(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with session.get(base + "/metrics") as r:
        text = await r.text()
    return {
        line.split("}", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(POLLS)
    }


async def _until_logged(log: Path, text: str, within: float, count: int = 1) -> float:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _text(log).count(text) >= count:
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise RuntimeError(f"{text!r} not logged within {within} s")


async def _reload_phases(
    session: aiohttp.ClientSession, proc: subprocess.Popen[bytes], base: str, log: Path,
    config: Path, sim: str, result: ReloadResult,
) -> None:  # fmt: skip
    before = await _polls(session, base)
    began = time.monotonic()
    result.marks.append(("unchanged reload", began))
    async with session.post(base + "/-/reload") as r:
        assert r.status == 200, await r.text()
    result.unchanged_reload_seconds = time.monotonic() - began
    write_config(config, sim, result.orgs, result.rules, target="12h")
    began = time.monotonic()
    result.marks.append(("reload", began))
    async with session.post(base + "/-/reload") as r:
        assert r.status == 200, await r.text()
    result.reload_seconds = time.monotonic() - began
    reloads_before = _text(log).count('"event": "reloaded"')
    write_config(config, sim, result.orgs, result.rules, target="6h")
    began = time.monotonic()
    result.marks.append(("storm", began))

    async def post() -> int:
        async with session.post(base + "/-/reload") as r:
            return r.status

    posts = [asyncio.create_task(post()) for _ in range(200)]
    for _ in range(50):
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.01)
    statuses = await asyncio.gather(*posts)
    result.storm_seconds = time.monotonic() - began
    result.marks.append(("storm answered", time.monotonic()))
    result.storm_posts, result.storm_ok = len(statuses), statuses.count(200)
    await asyncio.sleep(1.0)  # SIGHUP reloads queued behind the last POST
    result.storm_reloads = _text(log).count('"event": "reloaded"') - reloads_before
    result.marks.append(("end", time.monotonic()))
    after = await _polls(session, base)
    result.counters_kept = set(after) == set(before) and all(
        after[org] >= before[org] for org in before
    )


async def measure(
    orgs: int = 300, rules: int = 1000, emails: int = 200, *, wait_ready: bool = True
) -> ReloadResult:
    """Start, reload, storm and stop one exporter at this size; the measurements.

    Without `wait_ready` the reloads begin as soon as every poller runs, while the first polls
    (spread over ten seconds) are still going: quicker, and no easier.
    """
    result = ReloadResult(orgs, rules)
    async with multi_org_simulator(orgs, emails) as sim:
        with tempfile.TemporaryDirectory() as tmp:
            config, log = Path(tmp) / "config.yaml", Path(tmp) / "exporter.log"
            write_config(config, sim, orgs, rules)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
            args = [str(BIN / "alvaria-emailqueue-exporter"), "--config-file", str(config),
                    "--listen-address", f"127.0.0.1:{port}"]  # fmt: skip
            prober = Prober(base)  # before the exporter: it probes from its very first answer
            with log.open("wb") as out:
                spawned = time.monotonic()
                proc = subprocess.Popen(args, env=env, stdout=out, stderr=out)  # noqa: S603, ASYNC220 -- fixed arguments
            try:
                async with aiohttp.ClientSession() as session:
                    result.started = await _until_logged(log, '"event": "started"', 120) - spawned
                    if wait_ready:
                        result.ready = await _ready(session, base, 120) - spawned
                    result.marks.insert(0, ("spawn", spawned))
                    await _reload_phases(session, proc, base, log, config, sim, result)
                prober.finish()  # not probing an exporter that is stopping
                began = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
                result.stop_seconds = time.monotonic() - began
            finally:
                probe = prober.finish()
                _stop(proc)
            # Monotonic clocks are the system's: the prober's times compare with this process's.
            result.listening = probe.latencies[0][0] - spawned if probe.latencies else -1
            result.healthz_worst, result.healthz_failures = probe.worst(), probe.failures
            result.healthz_slowest = probe.slowest(spawned)
            if "Traceback" in _text(log):
                result.notes.append("a traceback was logged")
    return result


async def _ready(session: aiohttp.ClientSession, base: str, within: float) -> float:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with session.get(base + "/readyz") as r:
            if r.status == 200:
                return time.monotonic()
        await asyncio.sleep(0.05)
    raise RuntimeError("not ready in time")


def _phases(result: ReloadResult) -> str:
    origin = result.marks[0][1] if result.marks else 0.0
    return ", ".join(f"{name} {at - origin:.1f} s" for name, at in result.marks[1:])


def checks(result: ReloadResult) -> list[tuple[str, bool, str]]:
    """(name, passed, detail) for the soak's summary."""
    r = result
    return [
        (f"fleet start ({r.orgs} orgs x {r.rules} rules) < {START_LIMIT:g} s", r.started < START_LIMIT,
         f"listening {r.listening:.2f} s, pollers running {r.started:.2f} s, ready {r.ready:.2f} s"),
        (f"/healthz never above {HEALTHZ_LIMIT * 1000:g} ms", r.healthz_worst <= HEALTHZ_LIMIT
         and not r.healthz_failures,
         f"worst {r.healthz_worst * 1000:.1f} ms, failed probes: {r.healthz_failures[:3]} "
         f"(slowest: {r.healthz_slowest}; phases: {_phases(r)})"),
        (f"service-level reload < {RELOAD_LIMIT:g} s", r.reload_seconds < RELOAD_LIMIT,
         f"{r.reload_seconds:.2f} s (unchanged: {r.unchanged_reload_seconds:.2f} s)"),
        ("reload storm coalesced, every POST answered 200",
         r.storm_ok == r.storm_posts and r.storm_reloads <= STORM_RELOADS,
         f"{r.storm_ok}/{r.storm_posts} POSTs 200 + 50 SIGHUPs in {r.storm_seconds:.2f} s: "
         f"{r.storm_reloads} reloads ran"),
        ("every counter kept across the reloads", r.counters_kept, ""),
        (f"SIGTERM < {STOP_LIMIT:g} s", r.stop_seconds < STOP_LIMIT, f"{r.stop_seconds:.2f} s"),
        ("no traceback logged", not r.notes, "; ".join(r.notes)),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reloads", description=__doc__)
    parser.add_argument("--orgs", type=int, default=300)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--emails", type=int, default=200, help="emails per organisation")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.orgs, args.rules, args.emails))
    failed = 0
    for name, ok, detail in checks(result):
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
