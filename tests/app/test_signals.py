"""Signals sent to the real process: the daemon logs SIGHUP/SIGUSR1 and keeps serving, stops
cleanly on SIGQUIT; `--once` interrupted exits 130/143 with nothing printed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.fake_alvaria import FakeAlvaria, serving
from tests.fakes import free_port


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
    return {**base, **extra}


@asynccontextmanager
async def hanging_api() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An API that accepts connections and never answers; the event is set on the first one."""
    connected = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        connected.set()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connected
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def start_mode(mode: str, api_url: str) -> asyncio.subprocess.Process:
    """`python -m exporter <mode>` for one organisation on `api_url`, its output piped."""
    env = clean_env(
        {
            "ALVARIA_ORG_ID": "acme",
            "ALVARIA_API_KEY": "k",
            "ALVARIA_ACCESS_TOKEN": "t",
            "ALVARIA_API_URL": api_url,
        }
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", mode, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_once_interrupted_exits_128_plus_the_signal_with_nothing_printed(
    sig: signal.Signals, code: int
) -> None:
    async with hanging_api() as (url, connected):
        proc = await start_mode("--once", url)
        await asyncio.wait_for(connected.wait(), 20)
        proc.send_signal(sig)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == code, err
    assert out == b""
    assert f"interrupted by {sig.name}; nothing printed" in err.decode()
    assert b"Traceback" not in err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_check_connection_interrupted_exits_128_plus_the_signal_not_as_a_failed_step(
    sig: signal.Signals, code: int
) -> None:
    async with hanging_api() as (url, _):
        proc = await start_mode("--check-connection", url)
        assert proc.stdout is not None
        lines: list[str] = []
        while not any("connect API host" in line for line in lines):
            lines.append((await asyncio.wait_for(proc.stdout.readline(), 20)).decode())
        await asyncio.sleep(0.5)  # the first page request is waiting for its answer
        proc.send_signal(sig)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == code, (lines, out, err)
    assert b"FAIL" not in out and b"check-connection" not in out, out
    assert f"interrupted by {sig.name}" in err.decode()
    assert b"Traceback" not in err


@asynccontextmanager
async def daemon() -> AsyncIterator[tuple[asyncio.subprocess.Process, str, str]]:
    """The daemon polling a fake API; yields the process, its base URL and its log file path."""
    port = free_port()
    async with serving(FakeAlvaria(items=[{"id": "1", "state": "Queued"}])) as api:
        with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
            env = clean_env(
                api.env(ALVARIA_LISTEN_ADDRESS=f"127.0.0.1:{port}", ALVARIA_LOG_FORMAT="json")
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "exporter", env=env, stdout=log, stderr=log,
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            try:
                await wait_for_log(log.name, '"listening"')
                yield proc, url, log.name
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


def read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


async def wait_for_log(path: str, text: str) -> str:
    """The log once it contains `text` (at most 20 s)."""
    content = ""
    for _ in range(400):
        content = read(path)
        if text in content:
            return content
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} never logged:\n{content}")


async def test_sighup_and_sigusr1_are_logged_and_the_daemon_keeps_serving() -> None:
    async with daemon() as (proc, url, log), aiohttp.ClientSession() as session:
        proc.send_signal(signal.SIGHUP)
        await wait_for_log(log, "reload requested (SIGHUP)")
        proc.send_signal(signal.SIGUSR1)
        content = await wait_for_log(log, '"http_connections"')
        assert '"org": "acme"' in content
        # The counts of closed connections, not to be read as the limits of the same names.
        assert '"rejected_max_connections": 0' in content, content
        assert '"max_connections": 0' not in content
        async with session.get(f"{url}/healthz") as r:
            assert r.status == 200
        assert proc.returncode is None
        proc.send_signal(signal.SIGQUIT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        content = await wait_for_log(log, '"stopped"')
        assert "Traceback" not in content


async def pester(proc: asyncio.subprocess.Process, after: float = 0.15) -> int:
    """Send SIGHUP and SIGUSR1 every 20 ms from `after` seconds after the start until the process
    ends (at most 30 s); the number of signals sent."""
    await asyncio.sleep(after)  # the interpreter itself must be up: before that nothing can help
    sent = 0
    for _ in range(1500):
        if proc.returncode is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGHUP if sent % 2 == 0 else signal.SIGUSR1)
            sent += 1
        await asyncio.sleep(0.02)  # the pace of the signals, not a wait for a condition
    return sent


@pytest.mark.parametrize("mode", ["--once", "--check-connection", "--check-config"])
async def test_sighup_and_sigusr1_during_a_mode_never_kill_it(mode: str) -> None:
    async with serving(FakeAlvaria(items=[{"id": "1", "state": "Queued"}])) as api:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", mode, env=clean_env(api.env()),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        sender = asyncio.create_task(pester(proc))
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        sent = await sender
    assert sent > 0
    assert proc.returncode == 0, (proc.returncode, err.decode()[-2000:])
    assert b"Traceback" not in err
    if mode == "--once":
        assert b'alvaria_emailqueue_up{org="acme"} 1.0' in out


async def test_sighup_and_sigusr1_during_the_daemons_start_never_kill_it() -> None:
    port = free_port()
    async with serving(FakeAlvaria(items=[{"id": "1", "state": "Queued"}])) as api:
        with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
            env = clean_env(
                api.env(ALVARIA_LISTEN_ADDRESS=f"127.0.0.1:{port}", ALVARIA_LOG_FORMAT="json")
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "exporter", env=env, stdout=log, stderr=log,
            )  # fmt: skip
            sender = asyncio.create_task(pester(proc))
            try:
                await wait_for_log(log.name, '"started"')
                sender.cancel()
                assert proc.returncode is None, read(log.name)[-2000:]
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                        assert r.status == 200
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 10) == 0
            finally:
                sender.cancel()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


def test_the_console_script_ignores_them_before_importing_the_exporter() -> None:
    # What the console script imports first sets the dispositions, before any heavy import.
    code = (
        "import signal, sys; import exporter.__main__; "
        "print(signal.getsignal(signal.SIGHUP) is signal.SIG_IGN, "
        "signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN, 'exporter.app.main' in sys.modules)"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.split() == ["True", "True", "False"]
