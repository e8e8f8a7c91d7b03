"""What the handling KPIs cost a poll, on two queue shapes, against the orjson floor.

The `large` shape is `make bench`'s usual queue (most emails waiting, six work types, long
subjects and addresses); `uniform` spreads its emails evenly over 13 states x 3 email types x
100 work types with the shortest field values, so that decoding is cheap and the exporter's own
work per email weighs the most. For each shape, three polls take turns in this process, each
`repeats` times: the orjson floor, the exporter's poller with every KPI, and the same poller with
the eight KPI families on `metric_denylist` (which also removes their per-email work). Taking
turns, each in every place of the order, after a garbage collection, puts the three under the
same load on a shared machine; the medians are compared.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from exporter import settings
from exporter.app.wiring import build_poller
from exporter.polling.store import OrgState

from .polls import CONCURRENCY, _token
from .procs import CLIENT_SECRET, ORG, Simulator, exporter_args
from .steady import OrjsonFloor

# Every handling family (SPEC §10), anchored: the poll without the KPIs.
WITHOUT_KPIS = (
    "^alvaria_emailqueue_(handle_seconds|resolution_seconds|state_dwell_seconds"
    "|delivery_lag_seconds|repeat_contacts_total|agents_working|agent_load|work_type_info)$"
)


@dataclass(frozen=True)
class KpiRow:
    """Median CPU seconds of one poll of a queue shape: floor, without and with the KPIs."""

    shape: str
    emails: int
    floor: float
    without: float
    with_kpis: float

    @property
    def overhead(self) -> float:
        return self.with_kpis / self.without - 1

    @property
    def ratio(self) -> float:
        return self.with_kpis / self.floor


def _poller_run(
    sim: Simulator, session: aiohttp.ClientSession, *extra: str
) -> Callable[[], Awaitable[None]]:
    argv = [*list(exporter_args(sim, 0, 3600))[1:], *extra]
    cfg = settings.load(argv, {"ALVARIA_CLIENT_SECRET": CLIENT_SECRET}).settings
    poller = build_poller(cfg.targets[0], cfg, session, OrgState(ORG), True)

    async def poll() -> None:
        if not await poller.poll_once():
            raise RuntimeError(f"exporter poll failed: {poller.state.last_error}")

    return poll


async def _cpu(run: Callable[[], Awaitable[object]]) -> float:
    # Each run starts with no garbage of the one before (the floor leaves 100,000 dicts), so
    # no run pays for another's collection.
    gc.collect()
    started = time.process_time()
    await run()
    return time.process_time() - started


async def compare(sim: Simulator, shape: str, emails: int, repeats: int = 7) -> KpiRow:
    """The three polls of one shape, taking turns; the median CPU of each."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        floor = OrjsonFloor(session, sim, await _token(session, sim))
        runs = {
            "floor": floor.poll,
            "with": _poller_run(sim, session),
            "without": _poller_run(sim, session, "--metric-denylist", WITHOUT_KPIS),
        }
        for run in runs.values():  # warm-up: caches, the first (baseline) poll
            await run()
            await run()
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        order = list(runs)
        for _ in range(repeats):
            for name in order:
                cpu[name].append(await _cpu(runs[name]))
            order.append(order.pop(0))  # each takes every place in turn
    median = {name: statistics.median(values) for name, values in cpu.items()}
    return KpiRow(shape, emails, median["floor"], median["without"], median["with"])


def table(rows: list[KpiRow]) -> str:
    """The rows in Markdown."""
    if not rows:
        return ""
    out = [
        "",
        "",
        "Handling KPIs (handle, resolution and state times, delivery lag, repeat contacts,",
        "agents, work type info): CPU of one poll in the benchmark process, median of polls",
        "taking turns with the orjson floor and with the same poller without the KPIs (their",
        "eight families on `metric_denylist`). `uniform`: 13 states x 3 email types x 100 work",
        "types evenly, the shortest field values.",
        "",
        "| queue shape | emails | orjson floor CPU | without KPIs | with KPIs | KPI overhead "
        "| with KPIs x floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.shape} | {r.emails:,} | {r.floor * 1000:.0f} ms | {r.without * 1000:.0f} ms "
            f"| {r.with_kpis * 1000:.0f} ms | {r.overhead:+.1%} | {r.ratio:.2f} |"
        )
    return "\n".join(out)


def verdicts(rows: list[KpiRow]) -> list[tuple[str, bool]]:
    return [
        (f"handling KPIs add ≤ 10% to a poll's CPU ({r.shape} queue)", r.overhead <= 0.10)
        for r in rows
    ]
