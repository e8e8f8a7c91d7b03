"""Service levels at 100,000 waiting emails: poll-side cost of the breach instants and pickup
detection, and the scrape render cost of the six service-level families.

A synthetic queue (100 work types x 3 email types, every email waiting, queued over the last
day) is aggregated with the default continuous clock and with a business-hours calendar
(Mon-Fri 08:00-18:00 in London); then a second poll in which 10% of the emails were picked up
(with `activeTime`). Render cost is CPU time per sample of a fresh render of the whole
`/metrics` body and of the service-level families alone, against the render budget (≤ 2 µs
per sample fresh, bench/report.py).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import msgspec

from exporter.aggregation.builder import AggregationOptions, SnapshotBuilder
from exporter.app.wiring import build_registry
from exporter.domain import names
from exporter.domain.models import Email
from exporter.metrics.families import Block, gather
from exporter.metrics.servicelevels import (
    AT_RISK,
    BREACHED,
    NEXT_BREACH,
    PICKUP_WAIT,
    PICKUPS,
    TARGET,
)
from exporter.metrics.textformat import Renderer
from exporter.polling.store import Store
from exporter.servicelevels.calendar import BusinessCalendar
from exporter.servicelevels.policy import ServiceLevel, ServiceLevelPolicy, ServiceLevelRule

from .render import ORG, options, settings

WAITING_STATES = names.DEFAULT_WAITING_STATES
SL_FAMILIES = {f.name for f in (TARGET, BREACHED, AT_RISK, NEXT_BREACH, PICKUPS, PICKUP_WAIT)}
OFFICE = BusinessCalendar(
    "Europe/London", tuple(((480, 1080),) if day < 5 else () for day in range(7))
)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def waiting_emails(n: int, work_types: int, now: float) -> list[Email]:
    """`n` waiting emails over every (email type, work type), queued over the last day."""
    types = ("InboundEmail", "ManualOutboundEmail", "CampaignOutboundEmail")
    return [
        Email(
            id=str(i),
            state=WAITING_STATES[i % len(WAITING_STATES)],
            email_type=types[(i // work_types) % 3],
            work_type_name=f"Work type {i % work_types}",
            queued_time=_iso(now - (i * 7919 % 86400)),
        )
        for i in range(n)
    ]


def picked_up(emails: list[Email], share: int, now: float) -> list[Email]:
    """The same list with every `share`-th email taken by an agent a minute ago."""
    return [
        msgspec.structs.replace(e, state="Active", active_time=_iso(now - 60))
        if i % share == 0
        else e
        for i, e in enumerate(emails)
    ]


@dataclass(frozen=True)
class ServiceLevelCost:
    """One clock's numbers."""

    clock: str
    waiting: int
    first_poll: float  # CPU seconds: aggregation with breach instants
    pickup_poll: float  # CPU seconds: the next poll, 10% picked up
    pickups: int
    samples: int
    sl_samples: int
    fresh: float  # CPU seconds, whole body
    sl_fresh: float  # CPU seconds, service-level families only

    def per_sample(self) -> float:
        return self.fresh / self.samples

    def sl_per_sample(self) -> float:
        return self.sl_fresh / self.sl_samples


def _policy(business: bool) -> ServiceLevelPolicy:
    if not business:
        return ServiceLevelPolicy(ServiceLevel(3600.0, 900.0))
    level = ServiceLevel(4 * 3600.0, 3600.0, OFFICE, "office")
    return ServiceLevelPolicy(level, (ServiceLevelRule(level, work_type=".*"),))


def measure(n: int = 100_000, work_types: int = 100, repeats: int = 3) -> list[ServiceLevelCost]:
    """The cost rows for a continuous and a business-hours clock."""
    now = time.time()
    first = waiting_emails(n, work_types, now)
    second = picked_up(first, 10, now)
    rows = []
    for business in (False, True):
        opts: AggregationOptions = replace(options(work_types), service_levels=_policy(business))
        polls, pickup_polls, fresh, sl_fresh = [], [], [], []
        for _ in range(repeats):
            opts = replace(opts, service_levels=_policy(business))  # cold calendar cache
            started = time.process_time()
            builder = SnapshotBuilder(opts)
            builder.add(first)
            snap1 = builder.finish(now)
            polls.append(time.process_time() - started)
            started = time.process_time()
            builder = SnapshotBuilder(opts, snap1)
            builder.add(second)
            snap2 = builder.finish(now + 30)
            pickup_polls.append(time.process_time() - started)
            store = Store([ORG])
            store.orgs[ORG].record_success(snap1, 1.0, None, None)
            store.orgs[ORG].record_success(snap2, 1.0, snap2.flow, None)
            parts = gather(build_registry(store, settings()))
            sl_parts: list[list[Block]] = [
                [b for b in part if b.family.name in SL_FAMILIES]
                for part in parts
                if isinstance(part, list)
            ]
            started = time.thread_time()
            body = Renderer().render(parts, "text")
            fresh.append(time.thread_time() - started)
            started = time.thread_time()
            sl_body = Renderer().render(sl_parts, "text")
            sl_fresh.append(time.thread_time() - started)
        rows.append(
            ServiceLevelCost(
                clock="business hours" if business else "continuous",
                waiting=n,
                first_poll=statistics.median(polls),
                pickup_poll=statistics.median(pickup_polls),
                pickups=len(snap2.pickups),
                samples=_samples(body),
                sl_samples=_samples(sl_body),
                fresh=statistics.median(fresh),
                sl_fresh=statistics.median(sl_fresh),
            )
        )
    return rows


def _samples(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def table(rows: list[ServiceLevelCost]) -> str:
    """The service-level rows of the report."""
    out = [
        "",
        "",
        f"Service levels at {rows[0].waiting:,} waiting emails (CPU time, median; the second poll",
        "finds 10% of them picked up with `activeTime`):",
        "",
        "| clock | first poll | poll with pickups | render, all families | "
        "render, service-level families |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.clock} | {r.first_poll * 1e3:.0f} ms | {r.pickup_poll * 1e3:.0f} ms "
            f"({r.pickups:,} pickups) | {r.per_sample() * 1e6:.2f} µs x {r.samples:,} samples "
            f"| {r.sl_per_sample() * 1e6:.2f} µs x {r.sl_samples:,} samples |"
        )
    return "\n".join(out)


def verdicts(rows: list[ServiceLevelCost]) -> list[tuple[str, bool]]:
    """Within the render budget (≤ 2 µs per sample fresh) with the service-level families."""
    return [
        (
            f"fresh render ≤ 2 µs per sample with service levels at {r.waiting:,} waiting "
            f"emails ({r.clock})",
            r.per_sample() <= 2e-6,
        )
        for r in rows
    ]


if __name__ == "__main__":
    results = measure()
    print(table(results))
    for name, ok in verdicts(results):
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
