"""The service-level metric families (SPEC §6), declared once and filled at scrape time.

Only reads memory: breached, at-risk and next-breach values are bisections of the breach
instants each poll sorted per group, done in the render thread, where the queue collector's
blocks are built (`QueueCollector.read`)::

    alvaria_emailqueue_service_level_target_seconds{email_type="InboundEmail",org="acme",work_type="Sales"} 14400.0
    alvaria_emailqueue_service_level_breached_emails{email_type="InboundEmail",org="acme",work_type="Sales"} 3.0
    alvaria_emailqueue_pickups_total{email_type="InboundEmail",org="acme",service_level="met",work_type="Sales"} 812.0
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from exporter.domain import names
from exporter.domain.models import ServiceLevelGroup, Snapshot
from exporter.metrics.families import Block, Family
from exporter.polling.histograms import WaitHistogram
from exporter.polling.store import OrgReading

PAIR = names.PAIR_LABELS

TARGET = Family.gauge(
    names.SERVICE_LEVEL_TARGET,
    "Service-level target of the group: seconds from queued to picked up, on its clock.",
    *PAIR,
    per="pair",
)
BREACHED = Family.gauge(
    names.SERVICE_LEVEL_BREACHED,
    "Waiting emails whose age on the group's clock has reached the target" + names.FROM_LAST_POLL,
    *PAIR,
    per="pair",
)
AT_RISK = Family.gauge(
    names.SERVICE_LEVEL_AT_RISK,
    "Waiting emails not yet breached that breach within the warning time" + names.FROM_LAST_POLL,
    *PAIR,
    per="pair",
)
NEXT_BREACH = Family.gauge(
    names.SERVICE_LEVEL_NEXT_BREACH,
    "Unix time at which the next not-yet-breached waiting email breaches (absent when none).",
    *PAIR,
    per="pair",
)
PICKUPS = Family.counter(
    names.PICKUPS,
    "Emails picked up by an agent, judged on the group's clock against its target.",
    *PAIR,
    "service_level",
    per="pair",
    per_unit=len(names.SERVICE_LEVEL_OUTCOMES),
)
PICKUP_WAIT = Family.histogram(
    names.PICKUP_WAIT,
    "Wall-clock wait of picked-up emails: activeTime (else the poll seeing it) - queuedTime.",
    *PAIR,
    per="pair",
)


def queue_blocks(live: Sequence[tuple[str, Snapshot]], now: float) -> Iterator[Block]:
    """Target, breached, at risk and next breach of every live group."""
    target, breached, at_risk, next_breach = (
        f.block() for f in (TARGET, BREACHED, AT_RISK, NEXT_BREACH)
    )

    def target_of(group: ServiceLevelGroup) -> float:
        return group.target

    def breached_at_now(group: ServiceLevelGroup) -> int:
        return group.breached(now)

    def at_risk_at_now(group: ServiceLevelGroup) -> int:
        return group.at_risk(now)

    for org, snap in live:
        target.add_all((org,), snap.service, target_of, static=True)
        breached.add_all((org,), snap.service, breached_at_now)
        at_risk.add_all((org,), snap.service, at_risk_at_now)
        # The groups that have a next breach, and when: per series, so the collector's blocks
        # are built in the render thread (QueueCollector.read), not on the event loop.
        when = {
            pair: at
            for pair, group in snap.service.items()
            if (at := group.next_breach(now)) is not None
        }
        next_breach.add_all((org,), when)
    yield from (target, breached, at_risk, next_breach)


def pickup_blocks(states: Sequence[OrgReading], bounds: Sequence[float]) -> Iterator[Block]:
    """Pickups by outcome and their waits (histogram over `bounds`)."""
    pickups, waits = PICKUPS.block(), PICKUP_WAIT.block(buckets=bounds)
    buckets = len(bounds)

    def histogram(hist: WaitHistogram) -> tuple[list[int], float]:
        return hist.cumulative(buckets), hist.total

    bounds = tuple(bounds)
    for s in states:
        # No copies needed: the store replaces these mappings on every poll, never changes them.
        pickups.add_all((s.org,), s.pickups)
        # Counted in other bounds (age_buckets changed by a reload, before the next poll): left
        # out rather than shown under the wrong `le`.
        if s.pickup_bounds == bounds:
            waits.add_all((s.org,), s.pickup_waits, histogram, static=True)
    yield from (pickups, waits)
