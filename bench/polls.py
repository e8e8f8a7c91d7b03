"""Timed polls: the floor (fetch and `json.loads` every page) and the exporter's own poll."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from exporter import settings
from exporter.app.wiring import build_poller
from exporter.polling.poller import Poller
from exporter.polling.store import OrgState

from .procs import API_KEY, CLIENT_ID, CLIENT_SECRET, ORG, PAGE_CAP, Simulator, exporter_args

CONCURRENCY = 4


@dataclass(frozen=True)
class Timing:
    """Median wall and CPU seconds of repeated runs, and the longest event-loop stall seen."""

    wall: float
    cpu: float
    max_stall: float


async def _token(session: aiohttp.ClientSession, sim: Simulator) -> str:
    async with session.post(
        sim.token_url,
        data={"grant_type": "client_credentials"},
        auth=aiohttp.BasicAuth(CLIENT_ID, CLIENT_SECRET),
        headers={"x-api-key": API_KEY},
    ) as resp:
        resp.raise_for_status()
        return str((await resp.json())["access_token"])


class Floor:
    """What moving and parsing the bytes costs: the same paging, and `json.loads` of each page."""

    def __init__(self, session: aiohttp.ClientSession, sim: Simulator, token: str) -> None:
        self._session = session
        self._url = sim.emails_url
        self._headers = {"x-api-key": API_KEY, "Authorization": f"Bearer {token}"}

    async def _page(self, start: int) -> dict[str, object]:
        params = {"startIndex": str(start), "maxResults": str(PAGE_CAP), "getExtendedInfo": "true"}
        async with self._session.get(self._url, params=params, headers=self._headers) as resp:
            resp.raise_for_status()
            page: dict[str, object] = json.loads(await resp.read())
            return page

    async def poll(self) -> int:
        """Fetch and decode every page; the number of items seen."""
        first = await self._page(0)
        items = len(first["items"])  # type: ignore[arg-type]
        limit = asyncio.Semaphore(CONCURRENCY)

        async def fetch(start: int) -> int:
            async with limit:
                return len((await self._page(start))["items"])  # type: ignore[arg-type]

        total = int(first["totalItems"])  # type: ignore[call-overload]
        tasks = [asyncio.create_task(fetch(s)) for s in range(items, total, items or 1)]
        for done in asyncio.as_completed(tasks):
            items += await done
        return items


async def _max_stall(run: Callable[[], Awaitable[object]]) -> float:
    """The longest time the event loop was kept from a 1 ms ticker while `run` ran."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        while not stop:
            before = loop.time()
            await asyncio.sleep(0.001)
            worst = max(worst, loop.time() - before - 0.001)

    task = asyncio.create_task(ticker())
    await run()
    stop = True
    await task
    return worst


async def measure(run: Callable[[], Awaitable[object]], repeats: int) -> Timing:
    """One warm-up, `repeats` timed runs (median), then one run watched for loop stalls."""
    await run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        await run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    stall = await _max_stall(run)
    return Timing(statistics.median(walls), statistics.median(cpus), stall)


def exporter_poller(sim: Simulator, session: aiohttp.ClientSession) -> Poller:
    """The exporter's poller, wired by `main.build_poller` from the daemon's own flags."""
    argv = list(exporter_args(sim, 0, 3600))[1:]
    cfg = settings.load(argv, {"ALVARIA_CLIENT_SECRET": CLIENT_SECRET}).settings
    target = cfg.targets[0]
    return build_poller(target, cfg, session, OrgState(ORG), True)


async def run_both(sim: Simulator, repeats: int) -> tuple[Timing, Timing, int]:
    """Floor and exporter timings against the same simulator, and the items per poll."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        floor = Floor(session, sim, await _token(session, sim))
        items = await floor.poll()
        floor_timing = await measure(floor.poll, repeats)
        poller = exporter_poller(sim, session)

        async def poll() -> None:
            if not await poller.poll_once():
                raise RuntimeError(f"exporter poll failed: {poller.state.last_error}")

        exporter_timing = await measure(poll, repeats)
    assert poller.state.snapshot is not None and poller.state.snapshot.unique_items == items
    return floor_timing, exporter_timing, items
