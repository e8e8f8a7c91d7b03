"""The daemon's steady-state poll, read from its own log lines, against the orjson floor.

The floor fetches the same pages the same way (aiohttp, page size 1000, 4 in flight) and decodes
each body with orjson, the fastest JSON decoder available (the stdlib `json` floor is kept as a
second column). The daemon runs as its own process with nothing scraping it; every successful
poll logs `duration_seconds` (wall) and `cpu_seconds` (the process's CPU during the poll).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from .polls import CONCURRENCY, Floor, Timing, _token
from .procs import CLIENT_SECRET, PAGE_CAP, Simulator, _stop, exporter_args, free_port, wait_http


class OrjsonFloor(Floor):
    """The floor with orjson instead of `json.loads`."""

    async def _page(self, start: int) -> dict[str, object]:
        params = {"startIndex": str(start), "maxResults": str(PAGE_CAP), "getExtendedInfo": "true"}
        async with self._session.get(self._url, params=params, headers=self._headers) as resp:
            resp.raise_for_status()
            page: dict[str, object] = orjson.loads(await resp.read())
            return page


@dataclass(frozen=True)
class Steady:
    """Median wall and CPU seconds of the daemon's steady polls and of both floors."""

    emails: int
    polls: int
    wall: float
    cpu: float
    orjson: Timing
    stdlib: Timing

    @property
    def wall_ratio(self) -> float:
        return self.wall / self.orjson.wall

    @property
    def cpu_ratio(self) -> float:
        return self.cpu / self.orjson.cpu


def poll_lines(path: Path) -> list[dict[str, Any]]:
    """The daemon's successful poll events in its JSON log."""
    out = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "poll" and event.get("outcome") == "success":
            out.append(event)
    return out


async def steady_state(
    sim: Simulator, emails: int, polls: int = 12, interval: float = 4.0
) -> Steady:
    """The daemon's own polls, each followed (in the pause before its next one) by one poll of
    each floor, so that both see the same load on a shared machine."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        token = await _token(session, sim)
        fast, slow = OrjsonFloor(session, sim, token), Floor(session, sim, token)
        await fast.poll()  # warm both up
        await slow.poll()
        floors: list[tuple[Timing, Timing]] = []
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "daemon.log"
            args = [*exporter_args(sim, free_port(), interval)]
            args[args.index("--log-level") + 1] = "info"
            args += ["--log-format", "json"]
            port = args[args.index("--listen-address") + 1].rsplit(":", 1)[1]
            env = {**os.environ, "ALVARIA_CLIENT_SECRET": CLIENT_SECRET}
            with log.open("wb") as out:
                # Popen only forks; the argument list is built here, not taken from input.
                proc = subprocess.Popen(args, env=env, stdout=out, stderr=out)  # noqa: S603, ASYNC220
                try:
                    await wait_http(f"http://127.0.0.1:{port}/healthz", proc, within=30)
                    seen = 0
                    for _ in range(int((polls + 4) * interval * 3 / 0.05) + 1200):
                        done = len(poll_lines(log))
                        if done > seen:
                            seen = done
                            if done > 2:  # the first two fill caches; steady after
                                floors.append((await _once(fast.poll), await _once(slow.poll)))
                            if len(floors) >= polls:
                                break
                        await asyncio.sleep(0.05)
                finally:
                    _stop(proc)
            lines = poll_lines(log)[2 : 2 + len(floors)]
    if not lines or not floors:
        raise RuntimeError("the daemon logged no successful poll")
    return Steady(
        emails,
        len(lines),
        statistics.median(e["duration_seconds"] for e in lines),
        statistics.median(e["cpu_seconds"] for e in lines),
        _median(f for f, _ in floors),
        _median(s for _, s in floors),
    )


async def _once(run: Callable[[], Awaitable[object]]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    await run()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu, 0.0)


def _median(timings: Iterable[Timing]) -> Timing:
    runs = list(timings)
    return Timing(
        statistics.median(t.wall for t in runs),
        statistics.median(t.cpu for t in runs),
        max(t.max_stall for t in runs),
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def table(s: Steady, shape: str = "large") -> str:
    """The steady-state rows in Markdown (`shape`: the simulator's static scenario)."""
    queue = (
        ""
        if shape == "large"
        else f" of the {shape} queue shape (13 states x 3 email types x 100 work types, short field values)"
    )
    return "\n".join(
        [
            "",
            f"Daemon steady state at {s.emails:,} emails{queue}, nothing scraping it: the median of "
            f"{s.polls} polls from its own log lines (`duration_seconds`, `cpu_seconds`), "
            "against a floor that fetches the same pages with aiohttp and decodes them with "
            "orjson (and with stdlib `json`, for reference), one floor poll of each in the pause "
            "after every daemon poll (the same load on a shared machine).",
            "",
            "| | wall | CPU | wall x orjson floor | CPU x orjson floor |",
            "|---|---:|---:|---:|---:|",
            f"| daemon poll | {_ms(s.wall)} | {_ms(s.cpu)} | {s.wall_ratio:.2f} "
            f"| {s.cpu_ratio:.2f} |",
            f"| orjson floor | {_ms(s.orjson.wall)} | {_ms(s.orjson.cpu)} | 1.00 | 1.00 |",
            f"| stdlib json floor | {_ms(s.stdlib.wall)} | {_ms(s.stdlib.cpu)} "
            f"| {s.stdlib.wall / s.orjson.wall:.2f} | {s.stdlib.cpu / s.orjson.cpu:.2f} |",
        ]
    )


def verdicts(s: Steady, shape: str = "large") -> list[tuple[str, bool]]:
    queue = "" if shape == "large" else f" ({shape} queue)"
    return [
        (f"daemon poll wall ≤ 1.2x orjson floor{queue}", s.wall_ratio <= 1.2),
        (f"daemon poll CPU ≤ 1.2x orjson floor{queue}", s.cpu_ratio <= 1.2),
    ]
