"""`--demo`: the exporter with its in-process simulator serves a live, moving queue."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import free_port


async def queue_state(url: str) -> dict[tuple[tuple[str, str], ...], float]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        text = await resp.text()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "alvaria_emailqueue_emails"
    }


async def test_demo_serves_a_moving_queue_within_seconds() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter",
        "--demo",
        "--listen-address",
        f"127.0.0.1:{port}",
        "--poll-interval",
        "1s",
        "--log-format",
        "json",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 15
        while True:  # the log line that announces the URL
            line = await asyncio.wait_for(proc.stderr.readline(), deadline - time.monotonic())
            event = json.loads(line)
            if event["event"] == "listening":
                assert event["url"] == url
                break
        first: dict[tuple[tuple[str, str], ...], float] = {}
        while not first:
            assert time.monotonic() < deadline, "no queue series within 15 s"
            first = await queue_state(url)
            await asyncio.sleep(0.2)
        present = [dict(k) for k, v in first.items() if v > 0]
        assert len({k["work_type"] for k in present}) >= 3
        assert len({k["state"] for k in present}) >= 4
        assert len({k["email_type"] for k in present}) >= 2

        async with aiohttp.ClientSession() as session:
            async with session.get(url.removesuffix("metrics")) as resp:
                landing = await resp.text()
        assert "Demo mode: polling the built-in simulator at http://127.0.0.1:" in landing
        assert 'data-label="Status" class="up"' in landing
        assert 'data-label="Poll interval" class="num"><span class="nw">1 s</span><' in landing

        deadline = time.monotonic() + 30
        while (later := await queue_state(url)) == first:
            assert time.monotonic() < deadline, "the demo queue did not move within 30 s"
            await asyncio.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0
    assert later != first
