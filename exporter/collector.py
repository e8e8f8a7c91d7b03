"""Renders the store as Prometheus metric families at scrape time; only reads memory.

Sample of what it produces (Prometheus text format, abridged)::

    alvaria_emailqueue_up{org="acme"} 1.0
    alvaria_emailqueue_emails{email_type="InboundEmail",org="acme",state="Queued",work_type="Billing"} 42.0
    alvaria_emailqueue_oldest_email_age_seconds{email_type="InboundEmail",org="acme",state="Queued",work_type="Billing"} 1312.4
    alvaria_emailqueue_waiting_email_age_seconds_bucket{email_type="InboundEmail",le="300.0",org="acme",work_type="Billing"} 17.0
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from exporter import __version__, names
from exporter.errors import POLL_ERROR_REASONS
from exporter.models import Snapshot
from exporter.store import OrgState, Store

Metric = (
    GaugeMetricFamily | CounterMetricFamily | GaugeHistogramMetricFamily | HistogramMetricFamily
)
FROM_LAST_POLL = " (from the last successful poll)"
GROUP_LABELS = ["org", "state", "email_type", "work_type"]
PAIR_LABELS = ["org", "email_type", "work_type"]


class QueueCollector(Collector):
    """Builds fresh families from the store on every scrape, so vanished series disappear."""

    def __init__(
        self,
        store: Store,
        *,
        age_buckets: tuple[float, ...],
        stale_after: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._bounds = age_buckets
        self._le = [_format_le(b) for b in age_buckets] + ["+Inf"]
        self._stale_after = stale_after
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        build = GaugeMetricFamily(
            names.BUILD_INFO,
            "Exporter version and Python version; always 1.",
            labels=["version", "python_version"],
        )
        build.add_metric([__version__, platform.python_version()], 1)
        yield build
        states = list(self._store.orgs.values())
        yield from self._exporter_families(states)
        yield from self._flow_families(states)
        live = [(s.org, snap) for s in states if (snap := s.live_snapshot(now, self._stale_after))]
        yield from self._queue_families(live, now)

    def _exporter_families(self, states: list[OrgState]) -> Iterator[Metric]:
        org = ["org"]
        up = GaugeMetricFamily(
            names.UP, "1 when the last poll of the organisation succeeded.", labels=org
        )
        success = GaugeMetricFamily(
            names.LAST_POLL_SUCCESS, "Unix time of the last successful poll.", labels=org
        )
        duration = GaugeMetricFamily(
            names.LAST_POLL_DURATION, "Duration of the last poll in seconds.", labels=org
        )
        polls = CounterMetricFamily(names.POLLS, "Polls attempted.", labels=org)
        errors = CounterMetricFamily(
            names.POLL_ERRORS, "Failed polls by reason.", labels=["org", "reason"]
        )
        requests = CounterMetricFamily(
            names.API_REQUESTS,
            "Requests to the API by endpoint and HTTP status (`error` when no response).",
            labels=["org", "endpoint", "code"],
        )
        latency = HistogramMetricFamily(
            names.API_REQUEST_DURATION,
            "Duration of API requests in seconds.",
            labels=["org", "endpoint"],
        )
        reported = GaugeMetricFamily(
            names.API_REPORTED_ITEMS,
            "totalItems reported by the API" + FROM_LAST_POLL + ".",
            labels=org,
        )
        duplicates = CounterMetricFamily(
            names.DUPLICATE_ITEMS,
            "Items seen twice within one poll (the list moved while paged).",
            labels=org,
        )
        invalid = CounterMetricFamily(
            names.INVALID_ITEMS,
            "Items skipped because they were unusable, by reason.",
            labels=["org", "reason"],
        )
        overflow = CounterMetricFamily(
            names.LABEL_OVERFLOW,
            "Items whose label value was folded into `other` by a cardinality cap.",
            labels=["org", "label"],
        )
        expiry = GaugeMetricFamily(
            names.TOKEN_EXPIRY, "Unix time at which the cached API token expires.", labels=org
        )
        budget_wait = CounterMetricFamily(
            names.RATE_LIMIT_WAIT,
            "Seconds requests waited for the max_requests_per_second budget of their API key.",
            labels=org,
        )
        overruns = CounterMetricFamily(
            names.RATE_LIMIT_OVERRUNS,
            "Polls that took longer than poll_interval while waiting for the request budget.",
            labels=org,
        )
        for s in states:
            up.add_metric([s.org], 1 if s.up else 0)
            if s.last_success is not None:
                success.add_metric([s.org], s.last_success)
            if s.last_duration is not None:
                duration.add_metric([s.org], s.last_duration)
            polls.add_metric([s.org], s.polls)
            for reason in sorted(set(POLL_ERROR_REASONS) | set(s.poll_errors)):
                errors.add_metric([s.org, reason], s.poll_errors[reason])
            for (endpoint, code), count in sorted(s.api_requests.items()):
                requests.add_metric([s.org, endpoint, code], count)
            for endpoint, hist in sorted(s.api_durations.items()):
                latency.add_metric([s.org, endpoint], hist.cumulative(), hist.total)
            if s.snapshot is not None and s.snapshot.reported_items is not None:
                reported.add_metric([s.org], s.snapshot.reported_items)
            duplicates.add_metric([s.org], s.duplicates)
            for reason in sorted(set(names.INVALID_REASONS) | set(s.invalid)):
                invalid.add_metric([s.org, reason], s.invalid[reason])
            for label in sorted(set(names.OVERFLOW_LABELS) | set(s.overflow)):
                overflow.add_metric([s.org, label], s.overflow[label])
            if s.token_expiry is not None:
                expiry.add_metric([s.org], s.token_expiry)
            budget_wait.add_metric([s.org], s.rate_limit_wait)
            overruns.add_metric([s.org], s.budget_overruns)
        yield from (up, success, duration, polls, errors, requests, latency, reported)
        yield from (duplicates, invalid, overflow, expiry, budget_wait, overruns)

    def _flow_families(self, states: list[OrgState]) -> Iterator[Metric]:
        arrivals = CounterMetricFamily(
            names.ARRIVALS,
            "Emails seen for the first time, by comparing consecutive polls.",
            labels=PAIR_LABELS,
        )
        departures = CounterMetricFamily(
            names.DEPARTURES,
            "Emails gone from the list between consecutive polls, by their last state.",
            labels=["org", "email_type", "work_type", "state"],
        )
        transitions = CounterMetricFamily(
            names.STATE_TRANSITIONS,
            "State changes seen between consecutive polls.",
            labels=["org", "from_state", "to_state"],
        )
        for s in states:
            for (email_type, work_type), count in s.arrivals.items():
                arrivals.add_metric([s.org, email_type, work_type], count)
            for (state, email_type, work_type), count in s.departures.items():
                departures.add_metric([s.org, email_type, work_type, state], count)
            for (old, new), count in s.transitions.items():
                transitions.add_metric([s.org, old, new], count)
        yield from (arrivals, departures, transitions)

    def _queue_families(self, live: list[tuple[str, Snapshot]], now: float) -> Iterator[Metric]:
        emails = GaugeMetricFamily(
            names.EMAILS, "Emails in the queue" + FROM_LAST_POLL + ".", labels=GROUP_LABELS
        )
        oldest_ts = GaugeMetricFamily(
            names.OLDEST_EMAIL_TIMESTAMP,
            "Unix time of the oldest email in the group" + FROM_LAST_POLL + ".",
            labels=GROUP_LABELS,
        )
        oldest_age = GaugeMetricFamily(
            names.OLDEST_EMAIL_AGE,
            "Age at scrape time of the oldest email in the group" + FROM_LAST_POLL + ".",
            labels=GROUP_LABELS,
        )
        waiting = GaugeHistogramMetricFamily(
            names.WAITING_EMAIL_AGE,
            "Ages at scrape time of the emails waiting for an agent" + FROM_LAST_POLL + ".",
            labels=PAIR_LABELS,
        )
        agents = GaugeMetricFamily(
            names.AGENT_EMAILS,
            "Emails held by each agent, by state" + FROM_LAST_POLL + ".",
            labels=["org", "agent", "state"],
        )
        for org, snap in live:
            for (state, email_type, work_type), count in snap.counts.items():
                emails.add_metric([org, state, email_type, work_type], count)
            for (state, email_type, work_type), ts in snap.oldest.items():
                labels = [org, state, email_type, work_type]
                oldest_ts.add_metric(labels, ts)
                oldest_age.add_metric(labels, max(0.0, now - ts))
            for (email_type, work_type), ages in snap.waiting.items():
                counts = ages.bucket_counts(now, self._bounds)
                counts.append(len(ages.timestamps))
                waiting.add_metric(
                    [org, email_type, work_type],
                    list(zip(self._le, counts, strict=True)),
                    ages.age_sum(now),
                )
            for (agent, state), count in snap.agents.items():
                agents.add_metric([org, agent, state], count)
        yield from (emails, oldest_ts, oldest_age, waiting)
        if any(snap.agents for _, snap in live):
            yield agents


def _format_le(bound: float) -> str:
    """`le` label values as Prometheus clients write them (`60.0`, `2.5`)."""
    return repr(float(bound))
