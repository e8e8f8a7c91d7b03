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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from exporter.budget import CATCH_ALL, PairUse, SeriesBudget, SeriesCost
from exporter.labels import bound_label, fold_key
from exporter.models import (
    AgentKey,
    Email,
    EmailId,
    Flow,
    FoldMemory,
    GroupKey,
    PairKey,
    ServiceLevelGroup,
    Snapshot,
    WaitingAges,
)
from exporter.names import EMAIL_TYPES, OTHER, STATES, UNKNOWN
from exporter.servicelevel import PickupDetector, ServiceLevelPolicy, breach_times

# Undocumented `state` and `emailType` values are passed through, up to this many per
# organisation besides the documented ones; a feed of junk must not explode the series count.
MAX_EXTRA_VALUES = 20
# Raw label combinations remembered within a poll to skip resolving them again (a speed-up
# only, so bounded: cleared when full; combinations with over-long values are never kept).
RESOLVED_LIMIT = 16_384
# Longer ids are kept as a 16-byte digest: an id only has to be told apart from the others.
MAX_ID_LENGTH = 64


DEFAULT_COST = SeriesCost.for_buckets(10)


@dataclass(frozen=True, slots=True)
class AggregationOptions:
    """The settings that shape a snapshot."""

    waiting_states: frozenset[str] = frozenset({"Queued", "Queued2", "Transferred", "Reassigned"})
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
    # Series one organisation may export, all families together (see exporter.budget).
    max_series: int = 20_000
    max_label_length: int = 128
    series_cost: SeriesCost = DEFAULT_COST


def parse_timestamp(value: str | datetime | None) -> float | None:
    """Unix time of an ISO 8601 timestamp (`Z`, offsets, fractions); naive means UTC; else None."""
    if not value:
        return None
    if isinstance(value, datetime):
        parsed = value
        return (parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed).timestamp()
    try:
        parsed = datetime.fromisoformat(value)
    except (ValueError, TypeError):
        # RFC 3339 also allows a lower-case `z` and `t`, and stray whitespace; rare, so only
        # normalised when the fast path fails.
        try:
            parsed = datetime.fromisoformat(str(value).strip().upper())
        except (ValueError, TypeError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


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


def _label(*candidates: str | int | None) -> str:
    """The first non-empty candidate as a label value, else `unknown`."""
    for value in candidates:
        if value is not None and value != "":
            return str(value)
    return UNKNOWN


class _CappedLabel:
    """Admits up to `limit` distinct values besides `always`; later ones fold into `other`."""

    __slots__ = ("admitted", "always", "limit")

    def __init__(
        self, limit: int, admitted: Iterable[str] = (), always: Iterable[str] = ()
    ) -> None:
        self.limit = limit
        self.always = frozenset(always)
        self.admitted = {v for v in admitted if v != OTHER and v not in self.always}

    def admit(self, value: str) -> tuple[str, bool]:
        """The label value to use, and whether `value` was folded into `other`."""
        if value in self.always or value in self.admitted:
            return value, False
        if len(self.admitted) < self.limit:
            self.admitted.add(value)
            return value, False
        return OTHER, True


class _Group:
    """Running totals of one (state, email_type, work_type) group within a poll."""

    __slots__ = ("arrivals", "carried", "count", "key", "oldest", "stamps")

    def __init__(self, key: GroupKey, stamps: array[float] | None) -> None:
        self.key = key
        # The waiting-age timestamps of the group's (email_type, work_type) pair, or None
        # when the state is not a waiting one.
        self.stamps = stamps
        self.count = 0
        self.oldest = math.inf
        self.arrivals = 0
        self.carried = 0  # emails that were in this same group in the previous snapshot


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
        self._budget = SeriesBudget(
            options.max_series, options.series_cost, options.zero_fill_states
        )
        self._fold_memory = previous.fold_memory if previous else FoldMemory()
        self._new_folds: set[int] = set()
        self._previous_seen: dict[PairKey, float] = dict(previous.last_seen) if previous else {}
        self._previous_members: Mapping[EmailId, GroupKey] = (
            previous.memberships if previous else {}
        )
        # Values that still have live series keep their place under each cap, so a label does
        # not flip between its own series and `other` from one poll to the next.
        live = previous.counts if previous else {}
        self._states = _CappedLabel(MAX_EXTRA_VALUES, (k[0] for k in live), always=STATES)
        self._email_types = _CappedLabel(
            MAX_EXTRA_VALUES, (et for et, _ in self._previous_seen), always=EMAIL_TYPES
        )
        self._work_types = _CappedLabel(
            options.max_work_types, (wt for _, wt in self._previous_seen)
        )
        self._agents = _CappedLabel(
            options.max_agents, (agent for agent, _ in previous.agents) if previous else ()
        )
        self._overflow: Counter[str] = Counter()
        # The previous snapshot's key objects, so an unchanged email is matched by identity.
        self._keys: dict[GroupKey, GroupKey] = {k: k for k in previous.counts} if previous else {}
        self._groups: dict[GroupKey, _Group] = {}
        # Raw label values of an item -> its group.
        self._resolved: dict[tuple[object, ...], _Group] = {}
        self._memberships: dict[EmailId, GroupKey] = {}
        self._waiting: dict[PairKey, array[float]] = {}
        self._agent_counts: Counter[AgentKey] = Counter()
        self._carried: Counter[GroupKey] = Counter()
        self._transitions: Counter[tuple[str, str]] = Counter()
        self._invalid: Counter[str] = Counter()
        self._duplicates = 0
        self._undated = 0
        self._pickups = PickupDetector(
            previous.seen_waiting if previous else frozenset(),
            previous.picked if previous else frozenset(),
            first_poll=previous is None,
            parse=parse_timestamp,
        )

    def _fold(self, label: str, value: str) -> None:
        """Count `value` as folded into `other`, once per organisation (see FoldMemory)."""
        key = fold_key(label, value)
        new = self._new_folds
        if key not in new and key not in self._fold_memory and len(new) < self._fold_memory.limit:
            new.add(key)
            self._overflow[label] += 1

    def _admit(self, cap: _CappedLabel, label: str, value: str) -> str:
        """The label value for `value` from upstream: bounded, and within its cap."""
        value = bound_label(value, self._options.max_label_length)
        admitted, folded = cap.admit(value)
        if folded:
            self._fold(label, value)
        return admitted

    def _resolve(self, raw: tuple[str | None, str | None, str | None, str | int | None]) -> _Group:
        """The group of an item with these raw labels (first sight of the combination)."""
        state = self._admit(self._states, "state", raw[0] or UNKNOWN)
        email_type = self._admit(self._email_types, "email_type", raw[1] or UNKNOWN)
        work_type = self._admit(self._work_types, "work_type", _label(raw[2], raw[3]))
        key = self._keys.setdefault((state, email_type, work_type), (state, email_type, work_type))
        group = self._groups.get(key)
        if group is None:
            stamps = None
            if state in self._options.waiting_states:
                stamps = self._waiting.setdefault((email_type, work_type), array("d"))
            group = self._groups[key] = _Group(key, stamps)
        limit = self._options.max_label_length
        if all(type(v) is not str or len(v) <= limit for v in raw):
            if len(self._resolved) >= RESOLVED_LIMIT:
                self._resolved.clear()
            self._resolved[raw] = group
        return group

    def add(self, emails: Iterable[Email]) -> None:
        """Count a page of emails; repeated ids are counted once and reported as duplicates."""
        # Hot loop: one pass per email, everything it touches bound to locals.
        memberships = self._memberships
        previous_get = self._previous_members.get
        resolved_get = self._resolved.get
        agent_metrics = self._options.agent_metrics
        parse = parse_timestamp
        pickups = self._pickups
        previous_picked, previous_waiting = pickups.previous_picked, pickups.previous_waiting
        picked_add, waiting_add = pickups.picked.add, pickups.seen_waiting.add
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
            raw = (email.state, email.email_type, email.work_type_name, email.work_type_id)
            group = resolved_get(raw) or self._resolve(raw)
            key = group.key
            memberships[email_id] = key
            group.count += 1
            old = previous_get(email_id)
            if old is key:
                group.carried += 1
            elif old is None:
                group.arrivals += 1
            else:
                self._carried[old] += 1
                if old[0] != key[0]:
                    self._transitions[(old[0], key[0])] += 1
            # Pickup detection (servicelevel.PickupDetector; its `waiting` inlined here).
            if group.stamps is not None:
                (picked_add if email_id in previous_picked else waiting_add)(email_id)
            elif email_id in previous_picked:
                picked_add(email_id)
            elif old is None or email_id in previous_waiting:
                pickups.not_waiting(email_id, email, old is None)
            if agent_metrics:
                agent = _label(email.work_handler_name, email.work_handler_id)
                if agent != UNKNOWN:
                    agent = self._admit(self._agents, "agent", agent)
                    self._agent_counts[(agent, key[0])] += 1
            # An email's age counts from queuedTime, else receivedTime, else startTime. The page
            # decoder has parsed zoned timestamps already; text is the lenient path's.
            stamp: str | datetime | None = email.queued_time
            ts = stamp.timestamp() if stamp.__class__ is datetime else parse(stamp)
            if ts is None:
                ts = parse(email.received_time)
                if ts is None:
                    ts = parse(email.start_time)
                    if ts is None:
                        self._undated += 1
                        continue
            if ts < group.oldest:
                group.oldest = ts
            if group.stamps is not None:
                group.stamps.append(ts)

    def add_invalid(self, reason: str, count: int = 1) -> None:
        """Record items the decoder had to skip (not an object, wrong field types...)."""
        self._invalid[reason] += count

    def _flow(self) -> Flow:
        """Arrivals, departures and transitions since the previous snapshot."""
        arrivals: Counter[PairKey] = Counter()
        carried = self._carried
        for group in self._groups.values():
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
        """Fold the pairs and agents past `max_series` into `other` (see exporter.budget)."""
        uses = {pair: PairUse() for pair in live}
        for group in self._groups.values():
            use = uses.setdefault(group.key[1:], PairUse())
            use.emails += group.count
            use.states.add(group.key[0])
            if group.oldest != math.inf:
                use.dated.add(group.key[0])
        folds, spent = self._budget.plan_pairs(uses, live, self._reserved)
        if folds:
            self._fold_pairs(folds, live)
        room = self._budget.limit - self._reserved - spent
        previous_agents = self._previous.agents if self._previous else {}
        agent_folds = self._budget.plan_agents(self._agent_counts, previous_agents, room)
        for key, target in agent_folds.items():
            self._agent_counts[target] += self._agent_counts.pop(key)
            self._fold("agent", key[0])

    def _fold_pairs(self, folds: dict[PairKey, PairKey], live: dict[PairKey, float]) -> None:
        """Move the groups, waiting ages and memberships of folded pairs to their targets."""
        rekey: dict[GroupKey, GroupKey] = {}
        for key, group in list(self._groups.items()):
            target = folds.get(key[1:])
            if target is None:
                continue
            # Carried emails stay counted against the key they had, for the departures.
            self._carried[key] += group.carried
            group.carried = 0
            new_key = (key[0], *target)
            new_key = rekey[key] = self._keys.setdefault(new_key, new_key)
            del self._groups[key]
            into = self._groups.get(new_key)
            if into is None:
                group.key = new_key
                self._groups[new_key] = group
            else:
                into.count += group.count
                into.arrivals += group.arrivals
                into.oldest = min(into.oldest, group.oldest)
        for pair, target in folds.items():
            stamps = self._waiting.pop(pair, None)
            if stamps is not None:
                self._waiting.setdefault(target, array("d")).extend(stamps)
            live.pop(pair, None)
            if pair[1] != OTHER:
                self._fold("work_type", pair[1])
            if target == CATCH_ALL and pair[0] != OTHER:
                self._fold("email_type", pair[0])
        memberships = self._memberships
        for email_id, key in memberships.items():
            if key in rekey:
                memberships[email_id] = rekey[key]

    def finish(self, now: float, reported_items: int | None = None) -> Snapshot:
        """Freeze what was added into a snapshot taken at `now`."""
        ttl = self._options.series_ttl
        last_seen = {pair: t for pair, t in self._previous_seen.items() if now - t <= ttl}
        self._apply_budget(last_seen)
        groups = self._groups.values()
        for group in groups:
            last_seen[group.key[1:]] = now
        keys = self._keys
        counts: dict[GroupKey, int] = {}
        for email_type, work_type in last_seen:
            for state in self._options.zero_fill_states:
                key = (state, email_type, work_type)
                counts[keys.setdefault(key, key)] = 0
        counts.update((group.key, group.count) for group in groups)
        waiting: dict[PairKey, WaitingAges] = {}
        service: dict[PairKey, ServiceLevelGroup] = {}
        level = self._options.service_levels.level
        for pair in last_seen:
            stamps = array("d", sorted(self._waiting.get(pair, ())))
            waiting[pair] = WaitingAges(stamps, sum(stamps))
            lvl = level(pair)
            service[pair] = ServiceLevelGroup(
                lvl.target, lvl.warning, breach_times(stamps, lvl, now)
            )
        previous = self._previous
        # A new memory, not the previous snapshot's changed: this may run in a worker thread.
        self._fold_memory = self._fold_memory.remembering(self._new_folds)
        return Snapshot(
            taken_at=now,
            counts=counts,
            oldest={g.key: g.oldest for g in groups if g.oldest != math.inf},
            waiting=waiting,
            agents=dict(self._agent_counts),
            memberships=self._memberships,
            last_seen=last_seen,
            reported_items=reported_items,
            duplicates=self._duplicates,
            invalid=dict(self._invalid),
            overflow=dict(self._overflow),
            undated=self._undated,
            flow=self._flow() if previous is not None else None,
            service=service,
            pickups=tuple(
                self._pickups.pickups(
                    now, level, self._options.wait_buckets, lambda i: self._memberships[i][1:]
                )
            ),
            seen_waiting=self._pickups.seen_waiting,
            picked=self._pickups.picked,
            wait_bounds=tuple(self._options.wait_buckets),
            fold_memory=self._fold_memory,
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
