"""The simulator and the exporter daemon as child processes, so their CPU is not the client's."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ORG = "bench"
API_KEY = "bench-key"
CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"  # noqa: S105 -- the simulator's throwaway credential
PAGE_CAP = 1000
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Simulator:
    """A running simulator: where to reach it and how to authenticate."""

    base_url: str
    proc: subprocess.Popen[bytes]

    @property
    def token_url(self) -> str:
        return self.base_url + "/tokenservice/oauth2/access_token"

    @property
    def emails_url(self) -> str:
        return self.base_url + f"/via/v2/organizations/{ORG}/emailQueue/emails"


async def wait_http(url: str, proc: subprocess.Popen[bytes], within: float) -> None:
    """Until `url` answers at all (any status), or the process dies, or `within` seconds pass."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)):
                    return
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {within} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def simulator(emails: int, scenario: str = "large") -> AsyncIterator[Simulator]:
    """A static scenario (`large`, or `uniform`) with `emails` emails, served from its own
    process."""
    port = free_port()
    args = [
        str(BIN / "alvaria-emailqueue-simulator"),
        *("--listen-address", f"127.0.0.1:{port}", "--scenario", scenario, "--seed", "1"),
        *("--emails", str(emails), "--page-cap", str(PAGE_CAP), "--org-id", ORG),
        *("--api-key", API_KEY, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET),
    ]
    # Popen only forks; the fixed argument list comes from this module, not from input.
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603, ASYNC220
    try:
        sim = Simulator(f"http://127.0.0.1:{port}", proc)
        await wait_http(sim.base_url + "/", proc, within=120)
        yield sim
    finally:
        _stop(proc)


def exporter_args(sim: Simulator, port: int, poll_interval: float) -> Sequence[str]:
    """The command line of an exporter daemon polling `sim` the way the benchmark does."""
    return [
        str(BIN / "alvaria-emailqueue-exporter"),
        *("--org-id", ORG, "--api-key", API_KEY, "--client-id", CLIENT_ID),
        *("--api-url", sim.base_url, "--token-url", sim.token_url),
        *("--listen-address", f"127.0.0.1:{port}", "--poll-interval", f"{poll_interval}s"),
        *("--page-size", str(PAGE_CAP), "--max-concurrency", "4", "--log-level", "warning"),
    ]


@asynccontextmanager
async def daemon(sim: Simulator, poll_interval: float) -> AsyncIterator[tuple[str, int]]:
    """A real exporter process polling `sim`; yields its `/metrics` URL and pid once ready."""
    port = free_port()
    env = {**os.environ, "ALVARIA_CLIENT_SECRET": CLIENT_SECRET}
    proc = subprocess.Popen(  # noqa: S603, ASYNC220 -- as above
        exporter_args(sim, port, poll_interval),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(base + "/healthz", proc, within=30)
        yield base + "/metrics", proc.pid
    finally:
        _stop(proc)
