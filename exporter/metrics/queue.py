"""Renders the store as metric families at scrape time; only reads memory.

Every family is declared once below (see `exporter.metrics.families` for the API) and filled in
`QueueCollector.blocks()`, which runs on the event loop and hands whole snapshot mappings to the
render thread. Sample of what it produces (Prometheus text format, abridged)::

    alvaria_emailqueue_up{org="acme"} 1.0
    alvaria_emailqueue_emails{email_type="InboundEmail",org="acme",state="Queued",work_type="Billing"} 42.0
    alvaria_emailqueue_oldest_email_age_seconds{email_type="InboundEmail",org="acme",state="Queued",work_type="Billing"} 1312.4
    alvaria_emailqueue_waiting_email_age_seconds_bucket{email_type="InboundEmail",le="300.0",org="acme",work_type="Billing"} 17.0
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.domain import names
from exporter.domain.errors import POLL_ERROR_REASONS
from exporter.domain.models import Snapshot, WaitingAges
from exporter.metrics import buildinfo
from exporter.metrics import handling as handling_metrics
from exporter.metrics import servicelevels as servicelevel_metrics
from exporter.metrics.families import Block, Family, series_by_org, to_metric_family
from exporter.polling.histograms import REQUEST_DURATION_BUCKETS
from exporter.polling.store import OrgReading, Store, live_snapshot

GROUP = names.GROUP_LABELS
PAIR = names.PAIR_LABELS

BUILD_INFO = Family.gauge(
    names.BUILD_INFO,
    "Exporter version, source revision and Python version; always 1.",
    "version",
    "revision",
    "python_version",
)
UP = Family.gauge(names.UP, "1 when the last poll of the organisation succeeded.", "org")
LAST_POLL_SUCCESS = Family.gauge(
    names.LAST_POLL_SUCCESS, "Unix time of the last successful poll.", "org"
)
LAST_POLL_DURATION = Family.gauge(
    names.LAST_POLL_DURATION, "Duration of the last poll in seconds.", "org"
)
POLLS = Family.counter(names.POLLS, "Polls attempted.", "org")
POLL_ERRORS = Family.counter(names.POLL_ERRORS, "Failed polls by reason.", "org", "reason")
API_REQUESTS = Family.counter(
    names.API_REQUESTS,
    "Requests to the API by endpoint and HTTP status (`error` when no response).",
    "org",
    "endpoint",
    "code",
)
API_REQUEST_DURATION = Family.histogram(
    names.API_REQUEST_DURATION, "Duration of API requests in seconds.", "org", "endpoint"
)
API_REPORTED_ITEMS = Family.gauge(
    names.API_REPORTED_ITEMS, "totalItems reported by the API" + names.FROM_LAST_POLL, "org"
)
DUPLICATE_ITEMS = Family.counter(
    names.DUPLICATE_ITEMS, "Items seen twice within one poll (the list moved while paged).", "org"
)
INVALID_ITEMS = Family.counter(
    names.INVALID_ITEMS, "Items skipped because they were unusable, by reason.", "org", "reason"
)
LABEL_OVERFLOW = Family.counter(
    names.LABEL_OVERFLOW,
    "Items whose label value was folded into `other` by a cardinality cap.",
    "org",
    "label",
)
TOKEN_EXPIRY = Family.gauge(
    names.TOKEN_EXPIRY, "Unix time at which the cached API token expires.", "org"
)
RATE_LIMIT_WAIT = Family.counter(
    names.RATE_LIMIT_WAIT,
    "Seconds requests and polls waited for their API key's rate limit: max_requests_per_second, "
    "or the gateway's announced rate limit until its reset.",
    "org",
)
API_RATE_LIMIT_LIMIT = Family.gauge(
    names.API_RATE_LIMIT_LIMIT,
    "Requests per window the API's gateway allows the key (RateLimit-Limit), by endpoint.",
    "org",
    "endpoint",
)
API_RATE_LIMIT_REMAINING = Family.gauge(
    names.API_RATE_LIMIT_REMAINING,
    "Requests left in the gateway's window on its last answer (RateLimit-Remaining).",
    "org",
    "endpoint",
)
API_RATE_LIMIT_RESET = Family.gauge(
    names.API_RATE_LIMIT_RESET,
    "Unix time at which the gateway's window resets, from its last answer (RateLimit-Reset).",
    "org",
    "endpoint",
)
API_CERTIFICATE_EXPIRY = Family.gauge(
    names.API_CERTIFICATE_EXPIRY,
    "Unix time of the notAfter of the certificate the API (or token) host presented on the last "
    "TLS connection.",
    "org",
    "endpoint",
)
RATE_LIMIT_OVERRUNS = Family.counter(
    names.RATE_LIMIT_OVERRUNS,
    "Polls that took longer than poll_interval while waiting for the request rate limit.",
    "org",
)
POLL_INTERVAL = Family.gauge(
    names.POLL_INTERVAL, "Configured time between poll starts, in seconds.", "org"
)
STALE_AFTER = Family.gauge(
    names.STALE_AFTER,
    "Configured time without a successful poll after which queue series are dropped.",
    "org",
)
ARRIVALS = Family.counter(
    names.ARRIVALS,
    "Emails seen for the first time, by comparing consecutive polls.",
    *PAIR,
    per="pair",
)
DEPARTURES = Family.counter(
    names.DEPARTURES,
    "Emails gone from the list between consecutive polls, by their last state.",
    *GROUP,
    per="group",
)
STATE_TRANSITIONS = Family.counter(
    names.STATE_TRANSITIONS,
    "State changes seen between consecutive polls.",
    "org",
    "from_state",
    "to_state",
)
EMAILS = Family.gauge(
    names.EMAILS, "Emails in the queue" + names.FROM_LAST_POLL, *GROUP, per="group"
)
OLDEST_EMAIL_TIMESTAMP = Family.gauge(
    names.OLDEST_EMAIL_TIMESTAMP,
    "Unix time of the oldest email in the group" + names.FROM_LAST_POLL,
    *GROUP,
    per="dated_group",
)
OLDEST_EMAIL_AGE = Family.gauge(
    names.OLDEST_EMAIL_AGE,
    "Age at scrape time of the oldest email in the group" + names.FROM_LAST_POLL,
    *GROUP,
    per="dated_group",
)
WAITING_EMAIL_AGE = Family.gaugehistogram(
    names.WAITING_EMAIL_AGE,
    "Ages at scrape time of the emails waiting for an agent" + names.FROM_LAST_POLL,
    *PAIR,
    per="pair",
)
AGENT_EMAILS = Family.gauge(
    names.AGENT_EMAILS,
    "Emails held by each agent, by state" + names.FROM_LAST_POLL,
    "org",
    "agent",
    "state",
    per="agent",
)
SERIES = Family.gauge(
    names.SERIES,
    "Series the organisation exports now, all families together (against max_series).",
    "org",
)


def declared_families() -> tuple[Family, ...]:
    """Every family the queue and service-level collectors declare (the series budget prices
    those whose series grow with label values: `families.series_cost`)."""
    found = (
        *globals().values(),
        *vars(servicelevel_metrics).values(),
        *vars(handling_metrics).values(),
    )
    return tuple(value for value in found if isinstance(value, Family))


class QueueCollector(Collector):
    """Builds fresh families from the store on every scrape, so vanished series disappear.

    The server's scrapes only `read()` the store on the event loop (per organisation, not per
    series) and build the blocks from that reading in the render thread.
    """

    def __init__(
        self,
        store: Store,
        *,
        age_buckets: tuple[float, ...],
        stale_after: float,
        poll_interval: float,
        clock: Callable[[], float] = time.time,
        denied: frozenset[str] = frozenset(),
    ) -> None:
        self._store = store
        # Families on metric_denylist (by declared name): never exported, never counted.
        self._denied = denied
        self._bounds = age_buckets
        self._stale_after = stale_after
        self._poll_interval = poll_interval
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's view of `blocks()` (for `generate_latest`; the server uses blocks)."""
        for block in self.blocks():
            yield to_metric_family(block)

    def read(self) -> QueueReading:
        """The store as this scrape sees it, read at once (on the event loop)."""
        states = [s.reading() for s in self._store.orgs.values()]
        return QueueReading(self, states, self._clock())

    def blocks(self) -> Iterator[Block]:
        """Every family's series at this moment; cheap: whole mappings, rendered later."""
        return self.read().blocks()

    def build(self, states: list[OrgReading], now: float) -> Iterator[Block]:
        """The blocks of a reading taken at `now` (see `read`)."""
        denied = self._denied
        if BUILD_INFO.name not in denied:
            build = BUILD_INFO.block()
            build.add(buildinfo.labels(), 1)
            yield build
        live = [
            (s.org, snap)
            for s in states
            if (snap := live_snapshot(s.snapshot, now, self._stale_after))
        ]
        blocks = [
            *self._exporter_blocks(states),
            *self._limit_blocks(states),
            *self._timing_blocks(states),
            *self._flow_blocks(states),
            *self._queue_blocks(live, now),
            *servicelevel_metrics.queue_blocks(live, now),
            *servicelevel_metrics.pickup_blocks(states, self._bounds),
            *handling_metrics.counter_blocks(states, self._bounds),
            *handling_metrics.gauge_blocks(live),
        ]
        if denied:
            blocks = [block for block in blocks if block.family.name not in denied]
        yield from blocks
        if SERIES.name in denied:
            return
        # Counted from what is exported, not estimated: every family with an `org` label.
        counted = series_by_org(blocks)
        series = SERIES.block()
        for s in states:
            series.add((s.org,), counted[s.org] + 1)  # + this series itself
        yield series

    def _exporter_blocks(self, states: list[OrgReading]) -> Iterator[Block]:
        up, success, duration = UP.block(), LAST_POLL_SUCCESS.block(), LAST_POLL_DURATION.block()
        polls, errors, requests = POLLS.block(), POLL_ERRORS.block(), API_REQUESTS.block()
        latency = API_REQUEST_DURATION.block(buckets=REQUEST_DURATION_BUCKETS)
        reported, duplicates = API_REPORTED_ITEMS.block(), DUPLICATE_ITEMS.block()
        invalid, overflow, expiry = (
            INVALID_ITEMS.block(),
            LABEL_OVERFLOW.block(),
            TOKEN_EXPIRY.block(),
        )
        rate_limit_wait, overruns = RATE_LIMIT_WAIT.block(), RATE_LIMIT_OVERRUNS.block()
        for s in states:
            org = s.org
            up.add((org,), 1 if s.up else 0)
            if s.last_success is not None:
                success.add((org,), s.last_success)
            if s.last_duration is not None:
                duration.add((org,), s.last_duration)
            polls.add((org,), s.polls)
            for reason in sorted(set(POLL_ERROR_REASONS) | set(s.poll_errors)):
                errors.add((org, reason), s.poll_errors.get(reason, 0))
            for (endpoint, code), count in sorted(s.api_requests.items()):
                requests.add((org, endpoint, code), count)
            for endpoint, (counts, total) in sorted(s.api_durations.items()):
                latency.add((org, endpoint), (list(accumulate(counts)), total))
            if s.snapshot is not None and s.snapshot.reported_items is not None:
                reported.add((org,), s.snapshot.reported_items)
            duplicates.add((org,), s.duplicates)
            for reason in sorted(set(names.INVALID_REASONS) | set(s.invalid)):
                invalid.add((org, reason), s.invalid.get(reason, 0))
            for label in sorted(set(names.OVERFLOW_LABELS) | set(s.overflow)):
                overflow.add((org, label), s.overflow.get(label, 0))
            if s.token_expiry is not None:
                expiry.add((org,), s.token_expiry)
            rate_limit_wait.add((org,), s.rate_limit_wait)
            overruns.add((org,), s.rate_limit_overruns)
        yield from (up, success, duration, polls, errors, requests, latency, reported)
        yield from (duplicates, invalid, overflow, expiry, rate_limit_wait, overruns)

    def _limit_blocks(self, states: list[OrgReading]) -> Iterator[Block]:
        """The API's own limits: absent until an answer carried them (a TLS one, for the cert)."""
        limit, remaining = API_RATE_LIMIT_LIMIT.block(), API_RATE_LIMIT_REMAINING.block()
        reset, expiry = API_RATE_LIMIT_RESET.block(), API_CERTIFICATE_EXPIRY.block()
        for s in states:
            for endpoint, said in sorted(s.rate_limits.items()):
                if said.limit is not None:
                    limit.add((s.org, endpoint), said.limit)
                if said.remaining is not None:
                    remaining.add((s.org, endpoint), said.remaining)
                if said.reset_at is not None:
                    reset.add((s.org, endpoint), said.reset_at)
            for endpoint, not_after in sorted(s.certificate_expiry.items()):
                expiry.add((s.org, endpoint), not_after)
        yield from (limit, remaining, reset, expiry)

    def _timing_blocks(self, states: list[OrgReading]) -> Iterator[Block]:
        """The configured timing, so alert rules can adapt their windows to it."""
        interval, stale = POLL_INTERVAL.block(), STALE_AFTER.block()
        for s in states:
            interval.add((s.org,), self._poll_interval)
            stale.add((s.org,), self._stale_after)
        yield from (interval, stale)

    def _flow_blocks(self, states: list[OrgReading]) -> Iterator[Block]:
        arrivals, departures = ARRIVALS.block(), DEPARTURES.block()
        transitions = STATE_TRANSITIONS.block()
        for s in states:
            # Handed over as they are: a poll result replaces these counters (OrgState.
            # commit_success), never changes them in place, so between polls the render thread
            # reuses their lines.
            arrivals.add_all((s.org,), s.arrivals)
            departures.add_all((s.org,), s.departures)
            transitions.add_all((s.org,), s.transitions)
        yield from (arrivals, departures, transitions)

    def _queue_blocks(self, live: list[tuple[str, Snapshot]], now: float) -> Iterator[Block]:
        emails, oldest_ts = EMAILS.block(), OLDEST_EMAIL_TIMESTAMP.block()
        oldest_age = OLDEST_EMAIL_AGE.block()
        waiting = WAITING_EMAIL_AGE.block(buckets=self._bounds)
        agents = AGENT_EMAILS.block()
        bounds = self._bounds

        def age(ts: float) -> float:
            return now - ts if ts < now else 0.0

        def waiting_ages(ages: WaitingAges) -> tuple[list[int], float]:
            counts = ages.bucket_counts(now, bounds)
            counts.append(len(ages.timestamps))
            return counts, ages.age_sum(now)

        for org, snap in live:
            emails.add_all((org,), snap.counts)
            oldest_ts.add_all((org,), snap.oldest)
            oldest_age.add_all((org,), snap.oldest, age)
            waiting.add_all((org,), snap.waiting, waiting_ages)
            agents.add_all((org,), snap.agents)
        yield from (emails, oldest_ts, oldest_age, waiting)
        if any(snap.agents for _, snap in live):
            yield agents


@dataclass(frozen=True, slots=True)
class QueueReading:
    """The store as one scrape read it (`QueueCollector.read`); `blocks()` runs in the render
    thread and touches nothing but this reading."""

    collector: QueueCollector
    states: list[OrgReading]
    now: float

    def blocks(self) -> Iterator[Block]:
        return self.collector.build(self.states, self.now)
