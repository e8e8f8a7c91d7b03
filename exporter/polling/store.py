"""The latest snapshot and poll status of every organisation.

The poller is the only writer; the collector and the landing page only read. Every update is
a synchronous method on the event loop, so a scrape never sees half a poll; the costly part of a
success (`prepare_success`) only reads, in a worker thread, and builds new counters to swap in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.aggregation.series_budget import OWN_SERIES
from exporter.domain.models import Flow, GroupKey, PairKey, Snapshot
from exporter.domain.names import SERVICE_LEVEL_OUTCOMES
from exporter.polling.histograms import (
    DurationHistogram,
    HandlingCounters,
    WaitHistogram,
)
from exporter.upstream.limit_headers import Announced


@dataclass(frozen=True, slots=True)
class Counted:
    """A successful poll's counters, computed off the loop (`OrgState.prepare_success`)."""

    snapshot: Snapshot
    arrivals: dict[PairKey, int]
    departures: dict[GroupKey, int]
    transitions: dict[tuple[str, str], int]
    pickups: dict[tuple[str, str, str], int]
    pickup_waits: dict[PairKey, WaitHistogram]
    pickup_bounds: tuple[float, ...]
    handling: HandlingCounters
    # The counters these were computed from (by identity): a commit checks they are current.
    base: tuple[object, ...]


def live_snapshot(snapshot: Snapshot | None, now: float, stale_after: float) -> Snapshot | None:
    """`snapshot` while it is at most `stale_after` old at `now` (its series are served), else
    None."""
    if snapshot is None or now - snapshot.taken_at > stale_after:
        return None
    return snapshot


@dataclass(frozen=True, slots=True)
class OrgReading:
    """What a scrape reads of one organisation, taken at once on the event loop.

    Values, mappings the poller replaces (never changes) and copies of the counters it changes
    in place, so the render thread can build the series from it while polls go on.
    """

    org: str
    up: bool
    last_success: float | None
    last_duration: float | None
    polls: int
    poll_errors: dict[str, int]
    api_requests: dict[tuple[str, str], int]
    # endpoint -> (non-cumulative counts per bucket, sum)
    api_durations: dict[str, tuple[tuple[int, ...], float]]
    snapshot: Snapshot | None
    duplicates: int
    invalid: dict[str, int]
    overflow: dict[str, int]
    token_expiry: float | None
    rate_limit_wait: float
    rate_limit_overruns: int
    rate_limits: dict[str, Announced]
    certificate_expiry: dict[str, float]
    arrivals: dict[PairKey, int]
    departures: dict[GroupKey, int]
    transitions: dict[tuple[str, str], int]
    pickups: dict[tuple[str, str, str], int]
    pickup_waits: dict[PairKey, WaitHistogram]
    pickup_bounds: tuple[float, ...]
    handling: HandlingCounters


@dataclass(slots=True)
class OrgState:
    """Everything the exporter knows about one organisation."""

    org: str
    snapshot: Snapshot | None = None
    up: bool = False
    polled: bool = False
    # Bumped by every poll result, so cached renders of the store know they are outdated.
    version: int = 0
    last_success: float | None = None
    last_duration: float | None = None
    # The last failure stays after a recovery, with its time: "failed at 09:10, fine since".
    last_error: str | None = None
    last_error_reason: str | None = None
    last_error_at: float | None = None
    failures_in_a_row: int = 0
    polls: int = 0
    poll_errors: Counter[str] = field(default_factory=Counter)
    api_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    api_durations: dict[str, DurationHistogram] = field(default_factory=dict)
    duplicates: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    overflow: Counter[str] = field(default_factory=Counter)
    token_expiry: float | None = None
    # Per-series counters are plain dicts, not Counters: a dict of strings and numbers is one
    # the garbage collector stops tracking, so full collections do not walk every series.
    arrivals: dict[PairKey, int] = field(default_factory=dict)
    departures: dict[GroupKey, int] = field(default_factory=dict)
    transitions: dict[tuple[str, str], int] = field(default_factory=dict)
    # (email_type, work_type, "met" or "missed") -> pickups; and their waits per group.
    pickups: dict[tuple[str, str, str], int] = field(default_factory=dict)
    pickup_waits: dict[PairKey, WaitHistogram] = field(default_factory=dict)
    pickup_bounds: tuple[float, ...] = ()  # the bounds pickup_waits are counted in
    handling: HandlingCounters = field(default_factory=HandlingCounters)
    # Seconds requests waited for the request rate limiter of the API key, and polls
    # that took longer than poll_interval while waiting for it.
    rate_limit_wait: float = 0.0
    rate_limit_overruns: int = 0
    # Per endpoint: what the answers' rate-limit headers said last (each of limit, remaining and
    # reset from the last answer that carried it), and the notAfter (Unix time) of the
    # certificate the endpoint's host presented on the last TLS connection.
    rate_limits: dict[str, Announced] = field(default_factory=dict)
    certificate_expiry: dict[str, float] = field(default_factory=dict)

    def observe_rate_limit_wait(self, seconds: float) -> None:
        """Add time a request or a poll waited for the key's rate limit (ours or the gateway's)."""
        self.rate_limit_wait += seconds

    def observe_limits(self, endpoint: str, announced: Announced) -> None:
        """An answer's rate-limit headers (the transport's `on_limits`)."""
        self.rate_limits[endpoint] = self.rate_limits.get(endpoint, Announced()).merged(announced)

    def observe_certificate(self, endpoint: str, not_after: float) -> None:
        """The expiry of the certificate an https answer came with (the transport's
        `on_certificate`)."""
        self.certificate_expiry[endpoint] = not_after

    def record_rate_limit_overrun(self) -> None:
        """A poll outlasted poll_interval while waiting for the request rate limit."""
        self.rate_limit_overruns += 1

    def reserved_series(self) -> int:
        """Series this organisation exports that no label combination of the queue pays for:
        its own, the transitions, and the handling KPIs' series per state and email type, the
        agent gauges, and work_type_info's beyond one per pair (renames, shared names)."""
        reserved = OWN_SERIES + len(self.api_requests) + len(self.transitions)
        reserved += self.handling.series()
        if (snapshot := self.snapshot) is not None:
            kpis = snapshot.handling
            reserved += 1 if kpis.agents_working is not None else 0
            reserved += len(kpis.agent_load[0]) + 2 if kpis.agent_load is not None else 0
            reserved += max(0, len(kpis.work_type_info) - len(snapshot.last_seen))
        return reserved

    def requests_sent(self) -> int:
        """Requests sent to the API so far, every endpoint and answer."""
        return sum(self.api_requests.values())

    def observe_request(self, endpoint: str, code: str, seconds: float) -> None:
        """Count one upstream request (the transport's observer)."""
        self.api_requests[(endpoint, code)] += 1
        self.api_durations.setdefault(endpoint, DurationHistogram()).observe(seconds)

    def record_success(
        self, snapshot: Snapshot, duration: float, flow: Flow | None, token_expiry: float | None
    ) -> None:
        """Swap in a new snapshot and add what changed since the previous one."""
        self.commit_success(self.prepare_success(snapshot, flow), duration, token_expiry)

    def prepare_success(self, snapshot: Snapshot, flow: Flow | None) -> Counted:
        """The flow and pickup counters after `snapshot`, as new objects; changes nothing.

        The costly half of a successful poll (loops over every live group), so the poller runs
        it in a worker thread: it only reads this state's counters, which are replaced, never
        changed in place (a render thread may be reading them too).
        """
        live = snapshot.last_seen
        arrivals = Counter(self.arrivals)
        departures = Counter(self.departures)
        transitions = Counter(self.transitions)
        if flow is not None:
            arrivals.update(flow.arrivals)
            departures.update(flow.departures)
            transitions.update(flow.transitions)
        # Pre-create the label sets of every live group so rate() sees the first increase, and
        # drop those of groups gone for longer than series_ttl so they do not pile up forever.
        live_arrivals = {pair: n for pair, n in arrivals.items() if pair in live}
        live_departures = {key: n for key, n in departures.items() if key[1:] in live}
        for pair in live:
            live_arrivals.setdefault(pair, 0)
        for key in snapshot.counts:
            live_departures.setdefault(key, 0)
        pickups, waits, bounds = self._count_pickups(snapshot, gap=flow is None)
        base = (self.arrivals, self.departures, self.transitions, self.pickups, self.pickup_waits,
                self.handling)  # fmt: skip
        return Counted(
            snapshot,
            live_arrivals,
            live_departures,
            dict(transitions),
            pickups,
            waits,
            bounds,
            self.handling.counted(snapshot),
            base,
        )

    def commit_success(self, counted: Counted, duration: float, token_expiry: float | None) -> bool:
        """Swap in what `prepare_success` computed; False (nothing changed) when another result
        was committed since it was prepared, as its counters would be lost."""
        now = (self.arrivals, self.departures, self.transitions, self.pickups, self.pickup_waits,
               self.handling)  # fmt: skip
        if any(a is not b for a, b in zip(now, counted.base, strict=True)):
            return False
        snapshot = counted.snapshot
        self.snapshot = snapshot
        self.version += 1
        self.up = True
        self.polled = True
        self.polls += 1
        self.last_success = snapshot.taken_at
        self.last_duration = duration
        self.failures_in_a_row = 0
        self.token_expiry = token_expiry
        self.duplicates += snapshot.duplicates
        self.invalid.update(snapshot.invalid)
        self.overflow.update(snapshot.overflow)
        self.arrivals, self.departures = counted.arrivals, counted.departures
        self.transitions = counted.transitions
        self.pickups, self.pickup_waits = counted.pickups, counted.pickup_waits
        self.pickup_bounds = counted.pickup_bounds
        self.handling = counted.handling
        return True

    def _count_pickups(
        self, snapshot: Snapshot, *, gap: bool
    ) -> tuple[dict[tuple[str, str, str], int], dict[PairKey, WaitHistogram], tuple[float, ...]]:
        """Count the snapshot's pickups; after a stale gap only those timed by activeTime.

        The counters and histograms are replaced, never changed in place: a scrape being
        rendered in another thread reads the previous ones, and an unchanged mapping lets the
        renderer reuse its lines.
        """
        live = snapshot.last_seen
        pickups = {k: n for k, n in self.pickups.items() if k[:2] in live}
        waits = {pair: h for pair, h in self.pickup_waits.items() if pair in live}
        bounds = self.pickup_bounds
        if snapshot.wait_bounds != bounds:  # age_buckets changed by a reload
            waits, bounds = {}, snapshot.wait_bounds  # the histograms start afresh
        changed: dict[PairKey, WaitHistogram] = {}
        for pickup in snapshot.pickups:
            if gap and not pickup.exact:
                continue  # picked up some time in the gap: cannot be judged against a target
            key = (*pickup.pair, "met" if pickup.met else "missed")
            pickups[key] = pickups.get(key, 0) + 1
            hist = changed.get(pickup.pair)
            if hist is None:
                old = waits.get(pickup.pair) or WaitHistogram()
                hist = changed[pickup.pair] = WaitHistogram(dict(old.counts), old.total, old.count)
            hist.counts[pickup.bucket] = hist.counts.get(pickup.bucket, 0) + 1
            hist.total += pickup.wait
            hist.count += 1
        waits.update(changed)
        for email_type, work_type in live:
            for outcome in SERVICE_LEVEL_OUTCOMES:
                pickups.setdefault((email_type, work_type, outcome), 0)
            waits.setdefault((email_type, work_type), WaitHistogram())
        return pickups, waits, bounds

    def record_failure(
        self,
        reason: str,
        message: str,
        duration: float,
        token_expiry: float | None,
        at: float | None = None,
    ) -> None:
        """Mark the organisation down; the last snapshot stays until it goes stale."""
        self.up = False
        self.version += 1
        self.polled = True
        self.polls += 1
        self.poll_errors[reason] += 1
        self.last_duration = duration
        self.last_error = message
        self.last_error_reason = reason
        self.last_error_at = at
        self.failures_in_a_row += 1
        self.token_expiry = token_expiry

    def reading(self) -> OrgReading:
        """This state as a scrape sees it now (see OrgReading): cheap, no per-series work."""
        durations = {e: (tuple(h.counts), h.total) for e, h in self.api_durations.items()}
        return OrgReading(
            self.org, self.up, self.last_success, self.last_duration, self.polls,
            dict(self.poll_errors), dict(self.api_requests), durations, self.snapshot,
            self.duplicates, dict(self.invalid), dict(self.overflow), self.token_expiry,
            self.rate_limit_wait, self.rate_limit_overruns, dict(self.rate_limits),
            dict(self.certificate_expiry), self.arrivals, self.departures, self.transitions,
            self.pickups, self.pickup_waits, self.pickup_bounds, self.handling,
        )  # fmt: skip

    def live_snapshot(self, now: float, stale_after: float) -> Snapshot | None:
        """The snapshot to serve, or None once it is older than `stale_after`."""
        return live_snapshot(self.snapshot, now, stale_after)


class FleetStatus:
    """This replica's shard and the outcome of the last configuration (re)load.

    Recording a reload's outcome is a change of the store (`Store.version`), so a `/metrics`
    body rendered before a refused reload is never served after it.
    """

    __slots__ = ("_successful", "changes", "last_reload_success", "shard", "total_shards")

    def __init__(self) -> None:
        self.shard = 0
        self.total_shards = 1
        self.last_reload_success: float | None = None
        self.changes = 0
        self._successful = True

    @property
    def last_reload_successful(self) -> bool:
        return self._successful

    @last_reload_successful.setter
    def last_reload_successful(self, successful: bool) -> None:
        self._successful = successful
        self.changes += 1


class Store:
    """All organisations' state, in configuration order."""

    def __init__(self, org_ids: list[str]) -> None:
        self.orgs: dict[str, OrgState] = {org: OrgState(org) for org in org_ids}
        self.fleet = FleetStatus()
        # False until a daemon's first configuration is applied: its plan is built off the
        # event loop after the server listens, and /readyz must not call an empty set ready.
        self.configured = True
        # Versions of organisations removed by reloads, so `version` never goes back.
        self._retired = 0

    @property
    def version(self) -> int:
        """Changes whenever any organisation's poll finishes, or a reload is done or refused."""
        orgs = sum(state.version for state in self.orgs.values())
        return self._retired + self.fleet.changes + orgs

    def replace(self, orgs: dict[str, OrgState]) -> None:
        """Swap in a new set of organisations at once (a reload); kept states keep everything."""
        self._retired += 1 + sum(
            s.version for org, s in self.orgs.items() if orgs.get(org) is not s
        )
        self.orgs = orgs

    @property
    def ready(self) -> bool:
        """Every organisation has finished its first poll, successfully or not."""
        return self.configured and all(state.polled for state in self.orgs.values())
