"""The handling KPI families (SPEC §10), declared once and filled at scrape time.

Only reads memory: the store's handling counters (replaced by every poll, never changed in
place) and the live snapshot's gauges. No agent identity is exported: agents_working and
agent_load are counts::

    alvaria_emailqueue_handle_seconds_bucket{email_type="InboundEmail",le="300.0",org="acme",work_type="Sales"} 41.0
    alvaria_emailqueue_state_dwell_seconds_count{org="acme",state="Wrap"} 97.0
    alvaria_emailqueue_agents_working{org="acme"} 23.0
    alvaria_emailqueue_work_type_info{org="acme",work_type="Sales",work_type_id="114"} 1.0
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from exporter.domain import names
from exporter.domain.models import Snapshot
from exporter.metrics.families import Block, Family
from exporter.polling.histograms import WaitHistogram
from exporter.polling.store import OrgReading

PAIR = names.PAIR_LABELS

HANDLE = Family.histogram(
    names.HANDLE,
    "Emails that left the list from a handling state: seconds from the start of handling "
    "(activeTime, else the first poll seeing a handling state) to the departure.",
    *PAIR,
    per="pair",
)
RESOLUTION = Family.histogram(
    names.RESOLUTION,
    "The same departures: seconds from receivedTime (else queuedTime), the customer's wait "
    "for an answer.",
    *PAIR,
    per="pair",
)
STATE_DWELL = Family.histogram(
    names.STATE_DWELL,
    "Stays in a state that were seen to begin: from the first poll showing the state to the "
    "first showing another state or the departure.",
    "org",
    "state",
)
DELIVERY_LAG = Family.histogram(
    names.DELIVERY_LAG,
    "New emails with both times: receivedTime - sentTime (negative as 0).",
    "org",
    "email_type",
)
REPEAT_CONTACTS = Family.counter(
    names.REPEAT_CONTACTS,
    "New emails whose threadId belonged to an earlier email that had left the list, within "
    "thread_memory.",
    *PAIR,
    per="pair",
)
AGENTS_WORKING = Family.gauge(
    names.AGENTS_WORKING,
    "Distinct agents (workHandlerId) on emails in handling states" + names.FROM_LAST_POLL,
    "org",
)
AGENT_LOAD = Family.gaugehistogram(
    names.AGENT_LOAD,
    "Emails in handling states per working agent" + names.FROM_LAST_POLL,
    "org",
)
WORK_TYPE_INFO = Family.gauge(
    names.WORK_TYPE_INFO,
    "1 for each (workTypeId, workTypeName) pair an email carried within series_ttl: renames "
    "and shared names, and the names of work_type ids.",
    "org",
    "work_type_id",
    "work_type",
    per="pair",
)


def counter_blocks(states: Sequence[OrgReading], bounds: Sequence[float]) -> Iterator[Block]:
    """Handle, resolution, state-dwell and delivery-lag histograms, and repeat contacts."""
    blocks = {f: f.block(buckets=bounds) for f in (HANDLE, RESOLUTION, STATE_DWELL, DELIVERY_LAG)}
    repeats = REPEAT_CONTACTS.block()
    buckets = len(bounds)
    bounds = tuple(bounds)

    def histogram(hist: WaitHistogram) -> tuple[list[int], float]:
        return hist.cumulative(buckets), hist.total

    for s in states:
        counters = s.handling
        # No copies needed: the store replaces these mappings on every poll. Counted in other
        # bounds (age_buckets changed by a reload, before the next poll): left out rather than
        # shown under the wrong `le`.
        if counters.bounds == bounds:
            blocks[HANDLE].add_all((s.org,), counters.handle, histogram)
            blocks[RESOLUTION].add_all((s.org,), counters.resolution, histogram)
            blocks[STATE_DWELL].add_all((s.org,), counters.dwell, histogram)
            blocks[DELIVERY_LAG].add_all((s.org,), counters.delivery_lag, histogram)
        repeats.add_all((s.org,), counters.repeats)
    yield from blocks.values()
    yield repeats


def _one(_: object) -> int:
    return 1


def gauge_blocks(live: Sequence[tuple[str, Snapshot]]) -> Iterator[Block]:
    """Agents working, their load, and the work types' (id, name) pairs, of live snapshots."""
    working, load = AGENTS_WORKING.block(), AGENT_LOAD.block(buckets=names.AGENT_LOAD_BUCKETS)
    info = WORK_TYPE_INFO.block()
    for org, snap in live:
        kpis = snap.handling
        if kpis.agents_working is not None:
            working.add((org,), kpis.agents_working)
        if kpis.agent_load is not None:
            counts, held = kpis.agent_load
            load.add((org,), (counts, held))
        info.add_all((org,), kpis.work_type_info, _one)
    yield from (working, load, info)
