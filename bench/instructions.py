"""What a steady poll costs in instructions (valgrind's callgrind), with and without the KPIs.

CPU time on a shared machine moves by a fifth between runs; instructions do not. For each queue
shape, one process runs the orjson floor, the exporter's poller with every handling KPI, or the
same poller with the eight KPI families on `metric_denylist`, against the simulator over HTTP
(the same code paths as `bench.kpis`), under callgrind twice: three warm-up polls alone, then
the same with `--polls` more. The difference, divided by `--polls`, is one steady poll's
instructions (HTTP client, decoding, aggregation; the simulator is another process).

Instructions are not time: they leave out cache misses, which grow with the memory a poll
touches. Read them next to `make bench`'s timed rows. About a minute per shape and mode at the
default 20,000 emails. `python -m bench.instructions [--emails 20000] [--polls 4]`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable

import aiohttp
import structlog

from . import kpis
from .polls import CONCURRENCY, _token
from .procs import Simulator, simulator
from .steady import OrjsonFloor

MODES = ("floor", "without", "with")
SHAPES = ("large", "uniform")
WARM_UP = 3
_COLLECTED = re.compile(rb"Collected : (\d+)")


async def _polls(base: str, mode: str, polls: int) -> None:
    """The child: `WARM_UP + polls` polls of `mode` against the simulator at `base`."""
    sim = Simulator(base, None)  # type: ignore[arg-type]  # not started by this process
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY * 2)) as s:
        run: Callable[[], Awaitable[object]]
        if mode == "floor":
            run = OrjsonFloor(s, sim, await _token(s, sim)).poll
        elif mode == "with":
            run = kpis._poller_run(sim, s)
        else:
            run = kpis._poller_run(sim, s, "--metric-denylist", kpis.WITHOUT_KPIS)
        for _ in range(WARM_UP + polls):
            await run()


def _instructions(base: str, mode: str, polls: int) -> int:
    """Instructions callgrind counted in a child making `WARM_UP + polls` polls."""
    args = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    args += [sys.executable, "-m", "bench.instructions", "--child", base, mode, str(polls)]
    done = subprocess.run(args, capture_output=True, check=True)  # noqa: S603 -- fixed arguments
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind reported no count: {done.stderr[-500:]!r}")
    return int(found.group(1))


async def measure(emails: int, polls: int) -> dict[str, dict[str, float]]:
    """Shape -> mode -> instructions of one steady poll."""
    out: dict[str, dict[str, float]] = {}
    for shape in SHAPES:
        async with simulator(emails, shape) as sim:
            out[shape] = {}
            for mode in MODES:
                print(f"… {shape}: {mode}", file=sys.stderr)
                base = await asyncio.to_thread(_instructions, sim.base_url, mode, 0)
                more = await asyncio.to_thread(_instructions, sim.base_url, mode, polls)
                out[shape][mode] = (more - base) / polls
    return out


def table(emails: int, counts: dict[str, dict[str, float]]) -> str:
    rows = [
        f"Instructions of one steady poll of {emails:,} emails (callgrind, HTTP included):",
        "",
        "| shape | orjson floor | without KPIs | with KPIs | KPIs add | with KPIs / floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for shape, c in counts.items():
        rows.append(
            f"| {shape} | {c['floor'] / 1e6:,.0f} M | {c['without'] / 1e6:,.0f} M "
            f"| {c['with'] / 1e6:,.0f} M | {100 * (c['with'] / c['without'] - 1):+.1f} % "
            f"| {c['with'] / c['floor']:.2f} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--emails", type=int, default=20_000)
    parser.add_argument("--polls", type=int, default=4)
    parser.add_argument(
        "--child", nargs=3, metavar=("BASE", "MODE", "POLLS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.child:
        base, mode, polls = args.child
        asyncio.run(_polls(base, mode, int(polls)))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    print(table(args.emails, asyncio.run(measure(args.emails, args.polls))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
