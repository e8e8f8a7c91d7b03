"""The results as a Markdown table, the targets they are held to, and the record on the Operations page."""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from . import hostile as hostile_cases
from . import kpis as handling_kpis
from . import steady as steady_state
from .hostile import Hostile
from .polls import Timing
from .render import Liveness, RenderCost
from .scrape import Render, Scrapes
from .steady import Steady

MB = 1024 * 1024
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


@dataclass
class Size:
    """Everything measured at one queue size."""

    emails: int
    floor: Timing
    exporter: Timing
    daemon_rss: int


@dataclass
class Results:
    """One run of the suite."""

    sizes: list[Size] = field(default_factory=list)
    render: Render | None = None
    scrapes: Scrapes | None = None
    command: str = "make bench"
    render_costs: list[RenderCost] = field(default_factory=list)
    render_liveness: Liveness | None = None
    render_poll_liveness: Liveness | None = None
    daemon_liveness: Liveness | None = None
    daemon_poll_liveness: Liveness | None = None
    steady: Steady | None = None
    hostile: list[Hostile] = field(default_factory=list)
    # The daemon's steady poll of the uniform queue shape, and the KPIs' cost per shape.
    uniform: Steady | None = None
    kpis: list[handling_kpis.KpiRow] = field(default_factory=list)


def machine() -> str:
    """CPU model, cores and Python version, for reading the numbers in context."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs = ", ".join(
        f"{name} {version(name)}" for name in ("aiohttp", "msgspec", "prometheus-client")
    )
    return (
        f"{model}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()}; {libs}"
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def table(results: Results) -> str:
    """The results in Markdown."""
    out = [
        f"Machine: {machine()}.",
        "",
        "Poll of the whole queue (median of the timed runs after a warm-up poll; page size 1000,",
        "4 pages in flight). The floor fetches the same pages the same way and only runs",
        "`json.loads` (stdlib) on each body. CPU is the benchmark process's CPU time; the",
        "simulator serves from its own process.",
        "",
        "| emails | floor wall | exporter wall | wall xfloor | floor CPU | exporter CPU "
        "| CPU xfloor | longest loop stall | daemon peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results.sizes:
        out.append(
            f"| {s.emails:,} | {_ms(s.floor.wall)} | {_ms(s.exporter.wall)} "
            f"| {s.exporter.wall / s.floor.wall:.2f} | {_ms(s.floor.cpu)} | {_ms(s.exporter.cpu)} "
            f"| {s.exporter.cpu / s.floor.cpu:.2f} | {_ms(s.exporter.max_stall)} "
            f"| {s.daemon_rss / MB:.0f} MB |"
        )
    if len(results.sizes) >= 2:
        small, large = results.sizes[-2], results.sizes[-1]
        growth = large.exporter.wall / small.exporter.wall
        out += [
            "",
            f"Scaling {small.emails:,} → {large.emails:,} emails "
            f"({large.emails / small.emails:.0f}x the items): poll wall time x{growth:.1f}, "
            f"CPU x{large.exporter.cpu / small.exporter.cpu:.1f}.",
        ]
        per_10k = 10_000 / (large.emails - small.emails)
        out.append(
            f"Sizing, per 10,000 emails: {(large.daemon_rss - small.daemon_rss) * per_10k / MB:.1f} MB "
            f"of RSS and {large.exporter.cpu * 10_000 / large.emails * 1000:.0f} ms of CPU per poll "
            f"(on top of {small.daemon_rss / MB:.0f} MB for a daemon with "
            f"{small.emails:,} emails)."
        )
    if results.render is not None:
        r = results.render
        out += [
            "",
            f"`/metrics` render with {r.work_types} work types (every state, 3 email types): "
            f"{_ms(r.seconds)} per scrape, {r.size / 1024:.0f} KiB, {r.lines:,} samples.",
        ]
    if results.scrapes is not None:
        c = results.scrapes
        out.append(
            f"20 concurrent scrapers against the daemon at {results.sizes[-1].emails:,} emails, "
            f"polling every second ({c.polls} polls during {c.count:,} scrapes): "
            f"p50 {_ms(c.p50)}, p90 {_ms(c.p90)}, p99 {_ms(c.p99)}."
        )
    return "\n".join(out)


def verdicts(results: Results) -> list[tuple[str, bool]]:
    """The targets of the largest size, each with whether it was met."""
    large = results.sizes[-1]
    checks = [
        ("poll wall ≤ 1.5x floor", large.exporter.wall <= 1.5 * large.floor.wall),
        ("poll CPU ≤ 1.5x floor", large.exporter.cpu <= 1.5 * large.floor.cpu),
        ("longest loop stall ≤ 20 ms", large.exporter.max_stall <= 0.020),
        ("daemon peak RSS ≤ 150 MB", large.daemon_rss <= 150 * MB),
    ]
    if len(results.sizes) >= 2:
        small = results.sizes[-2]
        allowed = 1.2 * large.emails / small.emails
        checks.append(
            (
                f"linear: wall ≤ {allowed:.0f}x going from {small.emails:,} to {large.emails:,}",
                large.exporter.wall <= allowed * small.exporter.wall,
            )
        )
    if results.scrapes is not None:
        checks.append(("/metrics p99 ≤ 250 ms under 20 scrapers", results.scrapes.p99 <= 0.250))
    return checks


def update_readme(path: Path, text: str) -> None:
    """Replace the generated part of the Operations page's Performance section (append it if absent)."""
    readme = path.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in readme and END in readme:
        readme = re.sub(
            re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, readme, flags=re.S
        )
    else:
        readme = readme.rstrip("\n") + f"\n\n## Performance\n\n{block}\n"
    path.write_text(readme)


def command_line() -> str:
    """How this run was started, for the record."""
    return " ".join(["python -m bench", *sys.argv[1:]])


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def render_table(results: Results) -> str:
    """The `/metrics` render rows: cost per sample, and /healthz while renders run."""
    if not results.render_costs:
        return ""
    out = [
        "",
        "",
        "`/metrics` render, CPU time per sample (median of 5; fresh = first render of a new",
        "snapshot, warm = a later scrape of the same one; the baseline is prometheus_client's",
        "`generate_latest` of the same data, which used to run on the event loop):",
        "",
        "| samples | body | fresh | warm | baseline | fresh x baseline |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for c in results.render_costs:
        out.append(
            f"| {c.samples:,} | {c.size / MB:.1f} MB | {_us(c.per_sample(c.fresh))} "
            f"| {_us(c.per_sample(c.warm))} | {_us(c.per_sample(c.baseline))} "
            f"| {c.fresh / c.baseline:.2f} |"
        )
    rows = [
        ("renders only (no poll)", results.render_liveness),
        ("renders and a poll every 2 s", results.render_poll_liveness),
        ("daemon polling the simulator every 1 s", results.daemon_liveness),
        ("the same daemon, polls only (no scrapes)", results.daemon_poll_liveness),
    ]
    out += [
        "",
        "`/healthz` probed every 10 ms while 4 clients in another process fetch `/metrics`",
        "(OpenMetrics, gzip) flat out; the synthetic queue is polled by the daemon's own `Poller`",
        "(JSON pages of 1000, decoded on the loop as the client does); the daemon polls the",
        "simulator (100,000 emails in a full run):",
        "",
        "| case | samples | scrapes | polls | /healthz p99 | /healthz worst | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, live in rows:
        if live is not None:
            out.append(
                f"| {name} | {live.samples:,} | {live.scrapes:,} | {live.polls} "
                f"| {_ms(live.healthz_p99)} | {_ms(live.healthz_worst)} "
                f"| {live.peak_rss / MB:.0f} MB |"
            )
    return "\n".join(out)


def render_verdicts(results: Results) -> list[tuple[str, bool]]:
    """The render targets: ≤ 2 µs CPU per sample fresh; /healthz ≤ 50 ms while rendering."""
    checks = [
        (
            f"fresh render ≤ 2 µs per sample at {c.samples:,} samples",
            c.per_sample(c.fresh) <= 2e-6,
        )
        for c in results.render_costs
    ]
    for name, live in (
        ("renders", results.render_liveness),
        ("renders and polls", results.render_poll_liveness),
        ("renders and daemon polls", results.daemon_liveness),
        ("daemon polls", results.daemon_poll_liveness),
    ):
        if live is not None:
            checks.append(
                (
                    f"/healthz ≤ 50 ms worst during {name} ({live.samples:,} samples)",
                    live.healthz_worst <= 0.050,
                )
            )
    return checks


def bounds_table(results: Results) -> str:
    """The daemon's steady poll against the orjson floor, and the hostile-upstream cases."""
    out = []
    if results.steady is not None:
        out.append(steady_state.table(results.steady))
    if results.uniform is not None:
        out.append(steady_state.table(results.uniform, "uniform"))
    out.append(handling_kpis.table(results.kpis))
    if results.hostile:
        out.append(hostile_cases.table(results.hostile))
    return "\n".join(out)


def bounds_verdicts(results: Results) -> list[tuple[str, bool]]:
    checks = steady_state.verdicts(results.steady) if results.steady is not None else []
    if results.uniform is not None:
        checks += steady_state.verdicts(results.uniform, "uniform")
    checks += handling_kpis.verdicts(results.kpis)
    return checks + hostile_cases.verdicts(results.hostile)
