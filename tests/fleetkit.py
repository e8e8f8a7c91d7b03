"""Exporter processes over a multi-organisation simulator, for the shard, reload and rate-limit tests."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import RunningSimulator, SimulatorConfig, start_simulator
from exporter.simulator.app import SIMULATOR, Simulator
from tests.fakes import free_port, wait_for

SECRET = "sim-secret"


@dataclass
class Sim:
    """A simulator serving several organisations, in this test's event loop."""

    running: RunningSimulator
    config: SimulatorConfig

    @property
    def model(self) -> Simulator:
        return self.running.runner.app[SIMULATOR]

    def target(self, org: str, secret_file: Path, **extra: Any) -> dict[str, Any]:
        """One `targets:` block for `org`, its client secret read from `secret_file`."""
        return {
            "org_id": org,
            "api_key": self.config.api_key_for(org),
            "client_id": self.config.client_id,
            "client_secret_file": str(secret_file),
            "api_url": self.running.base_url,
            "token_url": self.running.token_url,
            **extra,
        }


@asynccontextmanager
async def simulator(orgs: int, **config: Any) -> AsyncIterator[Sim]:
    cfg = SimulatorConfig(orgs=orgs, seed=3, client_secret=SECRET, **config)
    running = await start_simulator(cfg)
    try:
        yield Sim(running, cfg)
    finally:
        await running.close()


def write_config(path: Path, targets: Sequence[dict[str, Any]], **settings: Any) -> Path:
    path.write_text(yaml.safe_dump({**settings, "targets": list(targets)}), encoding="utf-8")
    return path


@dataclass
class Daemon:
    """A running exporter process."""

    base: str
    proc: asyncio.subprocess.Process
    log: Path

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def hangup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)


@asynccontextmanager
async def exporter(
    config: Path, *flags: str, log: Path, ready: bool = True, auth: str | None = None
) -> AsyncIterator[Daemon]:
    """An exporter process reading `config`; yields once /readyz answers 200 (or at once)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
    env |= {"ALVARIA_LOG_FORMAT": "json", "ALVARIA_CONFIG_FILE": str(config)}
    args = ["-m", "exporter", "--listen-address", f"127.0.0.1:{port}", *flags]
    with log.open("wb") as out:  # a file, not a pipe: a pipe nobody reads blocks the process
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, env=env, stdout=out, stderr=out
        )
    daemon = Daemon(f"http://127.0.0.1:{port}", proc, log)
    try:
        if ready:
            await wait_for(
                lambda: status(daemon.base + "/readyz", auth),
                lambda s: s == 200,
                within=20,
            )
        yield daemon
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(base: str, auth: str | None = None) -> Samples:
    async with aiohttp.ClientSession(headers=_headers(auth)) as s, s.get(base + "/metrics") as r:
        assert r.status == 200, r.status
        text = await r.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def orgs_of(samples: Samples, name: str = "alvaria_emailqueue_up") -> set[str]:
    """Organisations with a sample of `name`."""
    return {dict(labels)["org"] for (n, labels), _ in samples.items() if n == name}


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of `name` over every label set that includes `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


async def post(url: str, auth: str | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession(headers=_headers(auth)) as s, s.post(url) as r:
        return r.status, await r.text()


async def status(url: str, auth: str | None = None, method: str = "GET") -> int:
    """The HTTP status of a request, or -1 when nothing answers."""
    try:
        async with aiohttp.ClientSession(headers=_headers(auth)) as s, s.request(method, url) as r:
            return r.status
    except aiohttp.ClientError:
        return -1


def basic(user: str, password: str) -> str:
    """An Authorization header value for HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _headers(auth: str | None) -> dict[str, str]:
    return {"Authorization": auth} if auth else {}
