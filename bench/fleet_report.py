"""The fleet benchmark's table and verdicts (`bench/fleet.py` measures)."""

from __future__ import annotations

import os
import statistics

from .fleet import FleetResult, Process

# Done when (issue: many small organisations as cheap as one big one):
CPU_RATIO = 1.5  # fleet CPU per email per poll against the single big organisation's
US_PER_SAMPLE = 1.5  # fleet GET /metrics, gzip, fresh after polls
HEALTHZ = 0.050  # worst /healthz while the fleet polls and four clients scrape


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def _row(layout: str, label: str, p: Process) -> str:
    healthz = "—" if p.healthz_worst is None else _ms(p.healthz_worst)
    return (
        f"| {layout} | {label} | {p.targets} | {p.emails:,} | {p.cpu_per_round:.2f} s "
        f"| {p.us_per_email:.2f} µs | {p.samples:,} | {_ms(p.metrics_median)} / "
        f"{_ms(p.metrics_worst)} | {p.us_per_sample:.2f} µs | {p.cpu_us_per_sample:.2f} µs "
        f"| {p.peak_rss / 2**20:.0f} MiB | {healthz} |"
    )


def table(result: FleetResult) -> str:
    """The rows for the Operations page and the sizing on the Deployment page."""
    head = (
        f"\n### {result.orgs} organisations x {result.emails:,} emails, next to one organisation "
        f"(poll every {result.interval:g} s; load average {result.load[0]:.1f} → "
        f"{result.load[1]:.1f} on {os.cpu_count()} cores)\n\n"
        f"CPU per poll round: the process's CPU over {result.rounds} rounds with nothing "
        "scraping it (the single organisation's daemon polling at the same time as the fleet's). "
        "GET /metrics: OpenMetrics and gzip as Prometheus asks, every 2 s while the polls go on, "
        "so each renders what they changed; per sample: the median time until the gzipped body "
        "is in, and the process's CPU per scrape (over the phase, the polls' share taken out). "
        "Worst /healthz: probed every 10 ms while four clients in another process fetch "
        "/metrics flat out.\n\n"
        "| layout | process | organisations | emails | CPU per poll round | per email per poll "
        "| samples | GET /metrics median / worst | per sample: time | per sample: CPU "
        "| peak RSS | worst /healthz |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    if result.single is not None:
        rows.append(_row("one organisation", "—", result.single))
    for run in result.runs:
        for p in run.processes:
            label = "—" if len(run.processes) == 1 else f"shard {p.shard}"
            rows.append(_row(run.name, label, p))
    one = result.runs[0].processes[0]
    per_org_cpu = one.cpu_per_round / max(1, one.targets)
    rows.append(
        f"\nPer organisation of {result.emails:,} emails (one process): "
        f"{per_org_cpu * 1000:.1f} ms CPU per poll and about "
        f"{_per_org_rss(result) / 2**20:.2f} MiB of memory."
    )
    if result.single is not None:
        ratio = one.us_per_email / result.single.us_per_email
        rows.append(
            f" CPU per email per poll: {ratio:.2f}x the single organisation of "
            f"{result.single.emails:,} emails."
        )
    return head + "\n".join(rows) + "\n"


def _per_org_rss(result: FleetResult) -> float:
    """Memory per organisation: the slope between the single process and the shards."""
    one = result.runs[0].processes[0]
    shards = result.runs[-1].processes
    points = [(p.targets, p.peak_rss) for p in shards] + [(one.targets, one.peak_rss)]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    if len(set(xs)) < 2:
        return one.peak_rss / max(1, one.targets)
    slope, _ = statistics.linear_regression(xs, ys)
    return max(0.0, slope)


def verdicts(result: FleetResult) -> list[tuple[str, bool]]:
    """Sharding pays; a small organisation costs about what its emails cost in a big one;
    /metrics stays cheap per sample; nothing stalls the event loop."""
    one = result.runs[0].processes[0]
    shards = result.runs[-1].processes
    cpu_sum = sum(p.cpu_per_round for p in shards)
    checks = [
        ("fleet: every organisation polled by exactly one shard",
         sum(p.targets for p in shards) == one.targets == result.orgs),
        ("fleet: 3 shards together use at most 1.5x the CPU of one process",
         cpu_sum <= 1.5 * one.cpu_per_round),
        ("fleet: every shard's peak RSS is below the single process's",
         all(p.peak_rss < one.peak_rss for p in shards)),
        (f"fleet: GET /metrics at most {US_PER_SAMPLE} µs of CPU per sample ({one.samples:,} "
         "samples, gzip, fresh after polls)", one.cpu_us_per_sample <= US_PER_SAMPLE),
        (f"fleet: GET /metrics answered within {US_PER_SAMPLE} µs per sample ({one.samples:,} "
         "samples, gzip, fresh after polls)", one.us_per_sample <= US_PER_SAMPLE),
        (f"fleet: worst /healthz at most {HEALTHZ * 1000:.0f} ms while polling, "
         "4 clients scraping", one.healthz_worst is not None and one.healthz_worst <= HEALTHZ),
    ]  # fmt: skip
    if result.single is not None:
        single = result.single
        checks.append(
            (f"fleet: CPU per email per poll at most {CPU_RATIO}x the single organisation of "
             f"{single.emails:,} emails", one.us_per_email <= CPU_RATIO * single.us_per_email)
        )  # fmt: skip
    return checks


def main() -> int:
    """`python -m bench.fleet_report [--quick]`: the fleet benchmark alone."""
    import argparse
    import asyncio
    import logging

    import structlog

    from . import fleet

    parser = argparse.ArgumentParser(prog="python -m bench.fleet_report", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 small organisations")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.quick:
        result = asyncio.run(fleet.measure(orgs=20, emails=200, interval=2.0, rounds=1, big=2000))
    else:
        result = asyncio.run(fleet.measure())
    print(table(result))
    failed = 0
    for name, ok in verdicts(result):
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
        failed += not ok
    return 1 if failed and not args.quick else 0


if __name__ == "__main__":
    raise SystemExit(main())
