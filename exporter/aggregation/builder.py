"""Pure aggregation of API emails into a `Snapshot`, and the flow diff between two snapshots.

No I/O, no clock, no prometheus_client: time comes in as `now`, so every rule here is testable
without an event loop. Emails are fed page by page (`SnapshotBuilder.add`) so no list of all
items is ever kept.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from exporter.aggregation.dating import queued_at
from exporter.aggregation.groups import Groups, RawLabels, label_value
from exporter.aggregation.handling import HandlingOptions, HandlingTracker
from exporter.aggregation.pickups import PickupDetector
from exporter.aggregation.series_budget import PairUse, SeriesBudget, SeriesCost
from exporter.domain.models import (
    AgentKey,
    Email,
    EmailId,
    Flow,
    GroupKey,
    PairKey,
    ServiceLevelGroup,
    Snapshot,
    WaitingAges,
)
from exporter.domain.names import DEFAULT_WAITING_STATES, STATES, UNKNOWN
from exporter.servicelevels.policy import ServiceLevelPolicy, breach_times

# Longer ids are kept as a 16-byte digest: an id only has to be told apart from the others.
MAX_ID_LENGTH = 64


# The cost with the default 10 age buckets, as `exporter.metrics.families.series_cost` derives it
# from the declared families (a test holds the two equal); the daemon always passes the derived one.
DEFAULT_COST = SeriesCost(pair=61, group=2, dated_group=2, agent=1)


@dataclass(frozen=True, slots=True)
class AggregationOptions:
    """The settings that shape a snapshot."""

    waiting_states: frozenset[str] = frozenset(DEFAULT_WAITING_STATES)
    series_ttl: float = 3600.0
    max_work_types: int = 500
    agent_metrics: bool = False
    max_agents: int = 2000
    # States reported as zero for every seen group: the documented ones, or only those a
    # server-side `states` filter asks for (the others are never fetched, so never known).
    zero_fill_states: tuple[str, ...] = STATES
    service_levels: ServiceLevelPolicy = field(default_factory=ServiceLevelPolicy)
    # Bucket bounds of the pickup-wait histogram (the age buckets).
    wait_buckets: tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)
    # Series one organisation may export, all families together (see exporter.aggregation.series_budget).
    max_series: int = 20_000
    max_label_length: int = 128
    series_cost: SeriesCost = DEFAULT_COST
    # The handling KPIs measured (SPEC §10), and what the work_type label holds: the work
    # type's name (else its id), or its id (else its name).
    handling: HandlingOptions = field(default_factory=HandlingOptions)
    work_type_label: str = "name"


def _canonical_id(email_id: str) -> EmailId:
    """A text id as the aggregation keeps it: decimal ids as ints, over-long ones as a digest.

    "007" stays a string, so no two distinct ids become one.
    """
    if len(email_id) < 19 and email_id.isascii() and email_id.isdigit():
        if email_id[0] != "0" or email_id == "0":
            return int(email_id)
    elif len(email_id) > MAX_ID_LENGTH:
        # As distinct as the id, bounded in size.
        return hashlib.blake2b(email_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return email_id


class SnapshotBuilder:
    """Accumulates one poll's emails page by page, then freezes them into a `Snapshot`.

    The flow since `previous` is counted on the way, so no second pass over the ids is needed.
    """

    def __init__(
        self, options: AggregationOptions, previous: Snapshot | None = None, reserved: int = 0
    ) -> None:
        self._options = options
        self._previous = previous
        # Series spent before any pair is placed: the exporter's own, state transitions.
        self._reserved = reserved
        self._limiter = SeriesBudget(
            options.max_series, options.series_cost, options.zero_fill_states
        )
        self._groups = Groups(
            waiting_states=options.waiting_states,
            max_work_types=options.max_work_types,
            max_agents=options.max_agents,
            max_label_length=options.max_label_length,
            previous=previous,
            by_id=options.work_type_label == "id",
        )
        self._previous_members: Mapping[EmailId, GroupKey] = (
            previous.memberships if previous else {}
        )
        self._memberships: dict[EmailId, GroupKey] = {}
        self._agent_counts: Counter[AgentKey] = Counter()
        self._carried: Counter[GroupKey] = Counter()
        self._transitions: Counter[tuple[str, str]] = Counter()
        self._invalid: Counter[str] = Counter()
        self._duplicates = 0
        self._undated = 0
        self._pickups = PickupDetector(
            previous.watched if previous else frozenset(),
            previous.picked if previous else frozenset(),
            waiting_states=options.waiting_states,
            first_poll=previous is None,
        )
        self._handling = HandlingTracker(
            options.handling, previous.handling if previous else None, first_poll=previous is None
        )

    def add(
        self, emails: Iterable[Email], details: Callable[[], Mapping[int, Email]] | None = None
    ) -> None:
        """Count a page of emails; repeated ids are counted once and reported as duplicates.

        `details` gives the page's emails with the fields read only at an email's first sight,
        when the page was decoded without them (`exporter.upstream.first_sight`).

        It is long because this is the one pass per email (about 1 to 2 µs per
        email of `make bench`'s 100,000, half the poll's CPU besides decoding), and each helper
        call per email would add a tenth to it. Everything rarer (new emails, state changes)
        is handed to the pickup and handling trackers.
        """
        # Hot loop: one pass per email, everything it touches bound to locals.
        memberships = self._memberships
        previous_get = self._previous_members.get
        groups = self._groups
        resolved_get, resolve = groups.resolved.get, groups.resolve
        agent_metrics = self._options.agent_metrics
        pickups = self._pickups
        previous_picked, picked_add = pickups.previous_picked, pickups.picked.add
        was_waiting, not_waiting = pickups.was_waiting, pickups.not_waiting
        watched = pickups.previous_watched
        # Handling KPIs (exporter.aggregation.handling): new emails and state changes only, and
        # the agents of emails in handling states.
        handling = self._handling
        tracking = handling.options.tracking
        arrive, move = handling.arrive, handling.move
        # Collected here, counted in C at the end (a dict update per email costs 5x more).
        handlers = handling.handlers.append if handling.options.agents else None
        # Both the work type's name and its id are read when the id is the label or the
        # (id, name) pairs are exported; else the name, or the id when there is no name.
        wide = self._options.work_type_label == "id" or handling.options.work_type_info
        for email in emails:
            email_id: EmailId | None = email.id
            # Ids are int32 strings: as ints they hash and compare faster and take less memory,
            # which keeps a 100k-id poll linear. The page decoder turns them into ints already;
            # text ids come from the lenient path, or from callers of `aggregate`.
            if email_id.__class__ is not int:
                if email_id is None or email_id == "":
                    self._invalid["missing_id"] += 1
                    continue
                if type(email_id) is str:
                    email_id = _canonical_id(email_id)
            if email_id in memberships:
                self._duplicates += 1
                continue
            # The work type label is the name, else the id: one value to hash, not two.
            raw: RawLabels = (
                (email.state, email.email_type, email.work_type_name, email.work_type_id)
                if wide
                else (email.state, email.email_type, email.work_type_name or email.work_type_id)
            )
            group = resolved_get(raw) or resolve(raw)
            key = group.key
            memberships[email_id] = key
            group.count += 1
            old = previous_get(email_id)
            if old is key:
                group.carried += 1
            elif old is None:
                group.arrivals += 1
                if tracking:
                    arrive(email_id, email, group)
            else:
                self._carried[old] += 1
                if old[0] != key[0]:
                    self._transitions[(old[0], key[0])] += 1
                    if tracking:
                        move(email_id, email, old, group)
            if handlers is not None and group.handling:
                handlers(email.work_handler_id)
            # Pickups (exporter.aggregation.pickups): a picked email stays picked; one outside
            # the waiting states that was waiting, or is new, may have been picked up (one
            # still in the same non-waiting group was not waiting, unless it is watched).
            if email_id in previous_picked:
                picked_add(email_id)
            elif group.stamps is None and (old is not key or (watched and email_id in watched)):
                waited = was_waiting(email_id, old)
                if waited or old is None:
                    not_waiting(email_id, email, old, waited)
            if agent_metrics:
                agent = label_value(email.work_handler_name, email.work_handler_id)
                if agent != UNKNOWN:
                    self._agent_counts[(groups.agent(agent), key[0])] += 1
            # An email's age counts from queuedTime (the page decoder has parsed a zoned one
            # already), else the fallbacks of `queued_at`.
            stamp: str | datetime | None = email.queued_time
            if stamp.__class__ is datetime:
                ts = stamp.timestamp()
            elif (fallback := queued_at(email)) is not None:
                ts = fallback
            else:
                self._undated += 1
                continue
            if ts < group.oldest:
                group.oldest = ts
            if group.stamps is not None:
                group.stamps.append(ts)
        if tracking:
            handling.first_sight(details)

    def add_invalid(self, reason: str, count: int = 1) -> None:
        """Record items the decoder had to skip (not an object, wrong field types...)."""
        self._invalid[reason] += count

    def _flow(self) -> Flow:
        """Arrivals, departures and transitions since the previous snapshot."""
        arrivals: Counter[PairKey] = Counter()
        carried = self._carried
        for group in self._groups.by_key.values():
            if group.arrivals:
                arrivals[group.key[1:]] += group.arrivals
            if group.carried:
                carried[group.key] += group.carried
        # The previous snapshot's group counts are its memberships counted by key, already.
        previous = self._previous.counts if self._previous else {}
        departures = Counter({key: n for key, n in previous.items() if n})
        departures.subtract(carried)
        return Flow(arrivals, +departures, self._transitions)

    def _apply_budget(self, live: dict[PairKey, float]) -> None:
        """Fold the pairs and agents past `max_series` into `other` (see exporter.aggregation.series_budget)."""
        groups = self._groups
        pairs = len(live) + len(groups.by_key)  # at most: the groups' pairs may be live ones
        if self._limiter.surely_fits(
            pairs, len(groups.by_key), len(self._agent_counts), self._reserved
        ):
            return
        uses = {pair: PairUse() for pair in live}
        for group in groups.by_key.values():
            use = uses.setdefault(group.key[1:], PairUse())
            use.emails += group.count
            use.states.add(group.key[0])
            if group.oldest != math.inf:
                use.dated.add(group.key[0])
        folds, spent = self._limiter.plan_pairs(uses, live, self._reserved)
        if folds:
            rekey = groups.fold_pairs(folds, self._carried)
            for pair in folds:
                live.pop(pair, None)
            memberships = self._memberships
            for email_id, key in memberships.items():
                if key in rekey:
                    memberships[email_id] = rekey[key]
        room = self._limiter.limit - self._reserved - spent
        previous_agents = self._previous.agents if self._previous else {}
        agent_folds = self._limiter.plan_agents(self._agent_counts, previous_agents, room)
        for agent, target in agent_folds.items():
            self._agent_counts[target] += self._agent_counts.pop(agent)
            groups.fold("agent", agent[0])

    def finish(
        self, now: float, reported_items: int | None = None, *, continuous: bool = True
    ) -> Snapshot:
        """Freeze what was added into a snapshot taken at `now`.

        `continuous`: the previous snapshot is recent enough (within `stale_after`) for what
        changed since to be dated by this poll; otherwise the handling KPIs start afresh.
        """
        options = self._options
        previous = self._previous
        groups = self._groups
        last_seen = {
            pair: t
            for pair, t in (previous.last_seen.items() if previous else ())
            if now - t <= options.series_ttl
        }
        self._apply_budget(last_seen)
        sealed = groups.by_key.values()
        for group in sealed:
            last_seen[group.key[1:]] = now
        counts: dict[GroupKey, int] = {}
        for email_type, work_type in last_seen:
            for state in options.zero_fill_states:
                key = groups.key((state, email_type, work_type))
                counts[key] = 0
        counts.update((group.key, group.count) for group in sealed)
        waiting_stamps: dict[PairKey, array[float]] = {}
        for group in sealed:
            if group.stamps is not None:
                waiting_stamps.setdefault(group.key[1:], array("d")).extend(group.stamps)
        waiting: dict[PairKey, WaitingAges] = {}
        service: dict[PairKey, ServiceLevelGroup] = {}
        level = options.service_levels.level
        for pair in last_seen:
            stamps = array("d", sorted(waiting_stamps.get(pair, ())))
            waiting[pair] = WaitingAges(stamps, sum(stamps))
            lvl = level(pair)
            service[pair] = ServiceLevelGroup(
                lvl.target, lvl.warning, breach_times(stamps, lvl, now)
            )
        # A new memory, not the previous snapshot's changed: this may run in a worker thread.
        fold_memory = groups.fold_memory.remembering(groups.new_folds)
        memberships = self._memberships
        flow = self._flow() if previous is not None else None
        return Snapshot(
            taken_at=now,
            counts=counts,
            oldest={g.key: g.oldest for g in sealed if g.oldest != math.inf},
            waiting=waiting,
            agents=dict(self._agent_counts),
            memberships=memberships,
            last_seen=last_seen,
            reported_items=reported_items,
            duplicates=self._duplicates,
            invalid=dict(self._invalid),
            overflow=dict(groups.overflow),
            undated=self._undated,
            flow=flow,
            service=service,
            pickups=tuple(
                self._pickups.pickups(
                    now, level, options.wait_buckets, lambda i: memberships[i][1:]
                )
            ),
            watched=self._pickups.watched,
            picked=self._pickups.picked,
            wait_bounds=tuple(options.wait_buckets),
            fold_memory=fold_memory,
            handling=self._handling.finish(
                now,
                continuous=continuous,
                # Only looked for when some email left (a set difference over every id).
                previous_members=self._previous_members if flow is None or flow.departures else {},
                members=memberships,
                waiting_states=options.waiting_states,
                info=groups.info,
                series_ttl=options.series_ttl,
                max_info=options.max_work_types,
            ),
        )


def aggregate(
    emails: Iterable[Email],
    *,
    now: float,
    options: AggregationOptions,
    previous: Snapshot | None = None,
    reported_items: int | None = None,
) -> Snapshot:
    """Aggregate a complete list of emails in one call."""
    builder = SnapshotBuilder(options, previous)
    builder.add(emails)
    return builder.finish(now, reported_items)


def diff(previous: Snapshot, current: Snapshot) -> Flow:
    """The flow between two snapshots, matched by email id, straight from the definition.

    `SnapshotBuilder` counts the same while it aggregates; this is the reference it is tested
    against, and works for any two snapshots.
    """
    before, after = previous.memberships, current.memberships
    arrivals: Counter[PairKey] = Counter()
    departures: Counter[GroupKey] = Counter()
    transitions: Counter[tuple[str, str]] = Counter()
    for email_id, (state, email_type, work_type) in after.items():
        old = before.get(email_id)
        if old is None:
            arrivals[(email_type, work_type)] += 1
        elif old[0] != state:
            transitions[(old[0], state)] += 1
    for email_id, key in before.items():
        if email_id not in after:
            departures[key] += 1
    return Flow(arrivals, departures, transitions)
