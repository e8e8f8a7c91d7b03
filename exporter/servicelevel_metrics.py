"""The service-level metric families (SPEC §6), rendered from the store at scrape time.

Only reads memory: breached, at-risk and next-breach values are bisections of the breach
instants each poll sorted per group, so a scrape costs O(groups * log(emails))::

    alvaria_emailqueue_service_level_target_seconds{email_type="InboundEmail",org="acme",work_type="Sales"} 14400.0
    alvaria_emailqueue_service_level_breached_emails{email_type="InboundEmail",org="acme",work_type="Sales"} 3.0
    alvaria_emailqueue_pickups_total{email_type="InboundEmail",org="acme",service_level="met",work_type="Sales"} 812.0
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from exporter import names
from exporter.models import Snapshot
from exporter.store import OrgState

PAIR_LABELS = ["org", "email_type", "work_type"]
FROM_LAST_POLL = " (from the last successful poll)"


def queue_families(live: Sequence[tuple[str, Snapshot]], now: float) -> Iterator[GaugeMetricFamily]:
    """Target, breached, at risk and next breach of every live group."""
    target = GaugeMetricFamily(
        names.SERVICE_LEVEL_TARGET,
        "Service-level target of the group: seconds from queued to picked up, on its clock.",
        labels=PAIR_LABELS,
    )
    breached = GaugeMetricFamily(
        names.SERVICE_LEVEL_BREACHED,
        "Waiting emails whose age on the group's clock has reached the target" + FROM_LAST_POLL,
        labels=PAIR_LABELS,
    )
    at_risk = GaugeMetricFamily(
        names.SERVICE_LEVEL_AT_RISK,
        "Waiting emails not yet breached that breach within the warning time" + FROM_LAST_POLL,
        labels=PAIR_LABELS,
    )
    next_breach = GaugeMetricFamily(
        names.SERVICE_LEVEL_NEXT_BREACH,
        "Unix time at which the next not-yet-breached waiting email breaches (absent when none).",
        labels=PAIR_LABELS,
    )
    for org, snap in live:
        for (email_type, work_type), group in snap.service.items():
            labels = [org, email_type, work_type]
            target.add_metric(labels, group.target)
            breached.add_metric(labels, group.breached(now))
            at_risk.add_metric(labels, group.at_risk(now))
            when = group.next_breach(now)
            if when is not None:
                next_breach.add_metric(labels, when)
    yield from (target, breached, at_risk, next_breach)


def pickup_families(
    states: Sequence[OrgState], le: Sequence[str]
) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
    """Pickups by outcome and their waits; `le` are the wait buckets' labels, `+Inf` last."""
    pickups = CounterMetricFamily(
        names.PICKUPS,
        "Emails picked up by an agent, judged on the group's clock against its target.",
        labels=[*PAIR_LABELS, "service_level"],
    )
    waits = HistogramMetricFamily(
        names.PICKUP_WAIT,
        "Wall-clock wait of picked-up emails: activeTime (else the poll seeing it) - queuedTime.",
        labels=PAIR_LABELS,
    )
    for s in states:
        for ((email_type, work_type), outcome), count in s.pickups.items():
            pickups.add_metric([s.org, email_type, work_type, outcome], count)
        for (email_type, work_type), hist in s.pickup_waits.items():
            counts = hist.cumulative(len(le) - 1)
            waits.add_metric(
                [s.org, email_type, work_type], list(zip(le, counts, strict=True)), hist.total
            )
    yield from (pickups, waits)
