"""`python -m bench`: floor vs exporter polls, daemon memory, `/metrics` render and scrape latency."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import structlog

from . import (
    fleet,
    fleet_report,
    hostile,
    kpis,
    polls,
    render,
    report,
    scrape,
    servicelevel,
    steady,
)
from .procs import simulator

# The Performance section of the Operations page, between its bench:begin and bench:end markers.
README = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny queues: checks the suite runs")
    parser.add_argument("--sizes", type=int, nargs="+", help="queue sizes (default 1k 10k 100k)")
    parser.add_argument("--repeats", type=int, default=5, help="timed polls per size")
    parser.add_argument("--scrape-seconds", type=float, default=10.0, help="scrape load duration")
    parser.add_argument(
        "--update-docs",
        "--update-readme",
        dest="update_readme",
        action="store_true",
        help="write the tables into docs/operations.md",
    )
    return parser.parse_args()


async def run(args: argparse.Namespace) -> report.Results:
    sizes = args.sizes or ([200, 1000] if args.quick else [1000, 10_000, 100_000])
    repeats = 2 if args.quick else args.repeats
    results = report.Results(command=report.command_line())
    for n in sizes:
        print(f"… {n:,} emails", file=sys.stderr)
        async with simulator(n) as sim:
            floor, exporter, items = await polls.run_both(sim, repeats)
            assert items == n, f"the simulator served {items} of {n} emails"
            rss = await scrape.daemon_peak_rss(sim)
            if n == sizes[-1]:
                seconds = 0.5 if args.quick else args.scrape_seconds
                results.scrapes = await scrape.scrape_under_polls(sim, seconds=seconds)
                print("… daemon steady-state poll against the orjson floor", file=sys.stderr)
                results.steady = await (
                    steady.steady_state(sim, n, polls=2, interval=1.0)
                    if args.quick
                    else steady.steady_state(sim, n)
                )
                print("… handling KPIs: polls with and without them", file=sys.stderr)
                results.kpis.append(await kpis.compare(sim, "large", n, 2 if args.quick else 7))
        results.sizes.append(report.Size(n, floor, exporter, rss))
    await _uniform_shape(args, sizes[-1], results)
    print("… /metrics render", file=sys.stderr)
    if args.quick:
        results.render = scrape.render(work_types=10, emails=1000, repeats=2)
    else:
        results.render = scrape.render()
    await _render_rows(args, results)
    if args.quick:  # two cases, to show the suite runs
        cases = ["endless bodies on pages 2-5", "totalItems of 10^30"]
        results.hostile = await hostile.run_all(polls=2, long_polls=3, cases=cases)
    else:
        results.hostile = await hostile.run_all(polls=5, long_polls=30)
    return results


async def _uniform_shape(args: argparse.Namespace, n: int, results: report.Results) -> None:
    """The second queue shape: 13 states x 3 email types x 100 work types, short values."""
    print(f"… uniform queue of {n:,} emails: the daemon against the orjson floor", file=sys.stderr)
    async with simulator(n, "uniform") as sim:
        results.uniform = await (
            steady.steady_state(sim, n, polls=2, interval=1.0)
            if args.quick
            else steady.steady_state(sim, n)
        )
        results.kpis.append(await kpis.compare(sim, "uniform", n, 2 if args.quick else 7))


async def _render_rows(args: argparse.Namespace, results: report.Results) -> None:
    """Render cost per sample at ~20k and >=150k samples; /healthz while /metrics renders."""
    print("… /metrics render cost and /healthz during renders", file=sys.stderr)
    sizes = [(500, 10, 2), (1000, 20, 3)] if args.quick else [render.NORMAL, render.LARGE]
    seconds = 0.5 if args.quick else args.scrape_seconds
    results.render_costs = [
        render.render_cost(size, repeats=2 if args.quick else 5) for size in sizes
    ]
    results.render_liveness = await render.liveness(sizes[-1], seconds=seconds, poll_interval=1000)
    results.render_poll_liveness = await render.liveness(sizes[-1], seconds=seconds)
    async with simulator(200 if args.quick else 100_000) as sim:
        results.daemon_liveness = await render.daemon_liveness(sim, seconds=seconds)
        results.daemon_poll_liveness = await render.daemon_liveness(sim, seconds, scrapers=0)


def main() -> int:
    args = _args()
    # The in-process poller logs each poll; only problems matter here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results = asyncio.run(run(args))
    print("… service levels at 100,000 waiting emails", file=sys.stderr)
    sl_rows = servicelevel.measure(2000, 10, 1) if args.quick else servicelevel.measure()
    text = report.table(results) + report.render_table(results) + report.bounds_table(results)
    text += servicelevel.table(sl_rows)
    print(
        "… fleet: 200 organisations next to one of 100,000 emails, then three shards",
        file=sys.stderr,
    )
    if args.quick:
        fleet_result = asyncio.run(
            fleet.measure(orgs=20, emails=200, interval=2.0, rounds=1, big=2000)
        )
    else:
        fleet_result = asyncio.run(fleet.measure())
    text += fleet_report.table(fleet_result)
    print(text)
    print()
    failed = 0
    checks = report.verdicts(results) + report.render_verdicts(results)
    checks += servicelevel.verdicts(sl_rows) + fleet_report.verdicts(fleet_result)
    for name, ok in checks + report.bounds_verdicts(results):
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
        failed += not ok
    if args.update_readme:
        report.update_readme(README, f"Produced by `{results.command}`:\n\n{text}")
    return 1 if failed and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
