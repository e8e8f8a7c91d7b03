"""The label groups of one poll: raw item labels to bounded group keys, and their running totals.

Each distinct combination of raw labels is resolved once per poll: its values are bounded
(`exporter.aggregation.labels`; once per process for all organisations, `BOUNDED`), admitted
under their caps or folded into `other`, and its key interned, so that an email still in its
group matches the previous snapshot's key by identity. A combination whose key the previous
snapshot exported as it is skips the caps (its values are admitted already). The
series budget's folds (`exporter.aggregation.series_budget`) are applied here too, at the end of the poll.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping

from exporter.aggregation.handling import is_handling
from exporter.aggregation.labels import bound_label, fold_key
from exporter.aggregation.series_budget import CATCH_ALL
from exporter.domain.models import FoldMemory, GroupKey, PairKey, Snapshot
from exporter.domain.names import EMAIL_TYPES, OTHER, STATES, UNKNOWN

# Undocumented `state` and `emailType` values are passed through, up to this many per
# organisation besides the documented ones; a feed of junk must not explode the series count.
MAX_EXTRA_VALUES = 20
# Raw label combinations remembered within a poll to skip resolving them again (a speed-up
# only, so bounded: cleared when full; combinations with over-long values are never kept).
RESOLVED_LIMIT = 16_384
# (state, email type, work type name or else id), as the items carry them; or, when the work
# type id is needed besides the name (`work_type_label: id`, work_type_info), (state, email
# type, work type name, work type id).
RawLabels = (
    tuple[str | None, str | None, str | int | None]
    | tuple[str | None, str | None, str | None, str | int | None]
)


# Tables of `BoundedLabels` kept at once (one per max_label_length and work type label choice in
# force; a reload to other settings adds one).
MAX_TABLES = 4
# What one raw combination bounds to: its group key before the caps, and the (work type id,
# name) pair it tells of (`work_type_info`), if it carries both.
Bounded = tuple[GroupKey, tuple[str, str] | None]


class BoundedLabels:
    """Raw labels -> their bounded values (`bound_label`, `unknown` for what is missing), for
    every organisation of the process at once.

    Bounding is pure, so one table (per `max_label_length` and work type label choice) serves
    all: organisations with the same work types resolve them once, and share the key objects
    (and their strings) in memory. Bounded like `resolved` (cleared when full; combinations with
    over-long values are never kept). Safe to read and fill from the loop and the worker
    thread at once: single dict operations.
    """

    __slots__ = ("_tables", "limit")

    def __init__(self, limit: int = RESOLVED_LIMIT) -> None:
        self.limit = limit
        self._tables: dict[tuple[int, bool], dict[RawLabels, Bounded]] = {}

    def table(self, max_length: int, by_id: bool = False) -> dict[RawLabels, Bounded]:
        """Raw labels -> bounded values, for labels of at most `max_length` (read only)."""
        key = (max_length, by_id)
        if key not in self._tables and len(self._tables) >= MAX_TABLES:
            self._tables.clear()  # reloads went through many settings: start afresh
        return self._tables.setdefault(key, {})

    def bound(self, raw: RawLabels, max_length: int, by_id: bool = False) -> tuple[Bounded, bool]:
        """The bounded values of `raw`, and whether they were kept (the raw values are short
        enough to keep). `by_id`: the work type label holds the id rather than the name."""
        info: tuple[str, str] | None = None
        if len(raw) == 4:
            name, work_type_id = raw[2], raw[3]
            chosen = label_value(work_type_id, name) if by_id else label_value(name, work_type_id)
            if name and work_type_id is not None and work_type_id != "":
                info = (bound_label(str(work_type_id), max_length), bound_label(name, max_length))
        else:
            chosen = label_value(raw[2])
        key = (
            bound_label(raw[0] or UNKNOWN, max_length),
            bound_label(raw[1] or UNKNOWN, max_length),
            bound_label(chosen, max_length),
        )
        if not all(type(v) is not str or len(v) <= max_length for v in raw):
            return (key, info), False
        table = self.table(max_length, by_id)
        if len(table) >= self.limit:
            table.clear()
        return table.setdefault(raw, (key, info)), True


BOUNDED = BoundedLabels()


def label_value(*candidates: str | int | None) -> str:
    """The first non-empty candidate as a label value, else `unknown`."""
    for value in candidates:
        if value is not None and value != "":
            return str(value)
    return UNKNOWN


class CappedLabel:
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


class Group:
    """Running totals of one (state, email_type, work_type) group within a poll."""

    __slots__ = ("arrivals", "carried", "count", "handling", "key", "oldest", "stamps")

    def __init__(self, key: GroupKey, waiting: bool, handling: bool = False) -> None:
        self.key = key
        self.handling = handling  # its state is a handling one (exporter.aggregation.handling)
        # The timestamps of its dated emails when the state is a waiting one (they become
        # the pair's waiting ages), else None.
        self.stamps: array[float] | None = array("d") if waiting else None
        self.count = 0
        self.oldest = math.inf
        self.arrivals = 0
        self.carried = 0  # emails that were in this same group in the previous snapshot

    def absorb(self, other: Group) -> None:
        """Take in a group of the same state (a pair folded into this one's)."""
        if self.stamps is not None and other.stamps is not None:
            self.stamps.extend(other.stamps)
        self.count += other.count
        self.arrivals += other.arrivals
        self.oldest = min(self.oldest, other.oldest)


class Groups:
    """The groups of one poll, and the caps and fold memory their labels are resolved with."""

    def __init__(
        self,
        *,
        waiting_states: frozenset[str],
        max_work_types: int,
        max_agents: int,
        max_label_length: int,
        previous: Snapshot | None,
        by_id: bool = False,
    ) -> None:
        self._waiting_states = waiting_states
        # The work_type label holds the work type id (else the name) rather than the name.
        self._by_id = by_id
        # (work type id, name) pairs carried by emails of admitted work types this poll.
        self.info: dict[tuple[str, str], None] = {}
        self._max_label_length = max_label_length
        self.fold_memory = previous.fold_memory if previous else FoldMemory()
        self.new_folds: set[int] = set()
        self.overflow: Counter[str] = Counter()
        # Values that still have live series keep their place under each cap, so a label does
        # not flip between its own series and `other` from one poll to the next.
        live = previous.counts if previous else {}
        seen = previous.last_seen if previous else {}
        self._states = CappedLabel(MAX_EXTRA_VALUES, (k[0] for k in live), always=STATES)
        self._email_types = CappedLabel(
            MAX_EXTRA_VALUES, (et for et, _ in seen), always=EMAIL_TYPES
        )
        self._work_types = CappedLabel(max_work_types, (wt for _, wt in seen))
        self._agents = CappedLabel(
            max_agents, (agent for agent, _ in previous.agents) if previous else ()
        )
        # The previous snapshot's key objects, so an unchanged email is matched by identity.
        self._keys: dict[GroupKey, GroupKey] = {k: k for k in live}
        self.by_key: dict[GroupKey, Group] = {}
        # Raw labels of an item -> its group.
        self.resolved: dict[RawLabels, Group] = {}
        self._bounded = BOUNDED.table(max_label_length, by_id)

    def key(self, key: GroupKey) -> GroupKey:
        """The interned form of `key`."""
        return self._keys.setdefault(key, key)

    def fold(self, label: str, value: str) -> None:
        """Count `value` as folded into `other`, once per organisation (see FoldMemory)."""
        key = fold_key(label, value)
        new = self.new_folds
        if key not in new and key not in self.fold_memory and len(new) < self.fold_memory.limit:
            new.add(key)
            self.overflow[label] += 1

    def _admit(self, cap: CappedLabel, label: str, value: str) -> str:
        """The label value for `value` (bounded already): itself, or `other` past its cap."""
        admitted, folded = cap.admit(value)
        if folded:
            self.fold(label, value)
        return admitted

    def agent(self, value: str) -> str:
        """The label value of an agent, within the agent cap."""
        return self._admit(self._agents, "agent", bound_label(value, self._max_label_length))

    def resolve(self, raw: RawLabels) -> Group:
        """The group of an item with these raw labels (first sight of the combination)."""
        entry = self._bounded.get(raw)
        kept = entry is not None
        if entry is None:
            entry, kept = BOUNDED.bound(raw, self._max_label_length, self._by_id)
        bounded, info = entry
        # A key the previous snapshot exported (or this poll admitted) as it is: each of its
        # values is admitted under its cap already, so admitting them again would change
        # nothing. (`other` is left to the caps: it is never admitted ahead.)
        key = self._keys.get(bounded)
        if key is None or OTHER in key:
            state = self._admit(self._states, "state", bounded[0])
            email_type = self._admit(self._email_types, "email_type", bounded[1])
            work_type = self._admit(self._work_types, "work_type", bounded[2])
            admitted = (state, email_type, work_type)
            # The shared tuple when nothing folded: organisations share their keys in memory.
            key = self.key(bounded if admitted == bounded else admitted)
        if info is not None and key[2] != OTHER:
            self.info[info] = None
        group = self.by_key.get(key)
        if group is None:
            state = key[0]
            waiting = state in self._waiting_states
            handling = is_handling(state, self._waiting_states)
            group = self.by_key[key] = Group(key, waiting, handling)
        if kept:  # combinations with over-long values are never kept
            if len(self.resolved) >= RESOLVED_LIMIT:
                self.resolved.clear()
            self.resolved[raw] = group
        return group

    def fold_pairs(
        self, folds: Mapping[PairKey, PairKey], carried: Counter[GroupKey]
    ) -> dict[GroupKey, GroupKey]:
        """Move the groups of folded pairs into their targets; old key -> new key.

        Emails carried over in a moved group stay counted (in `carried`) against the key they
        had, so the departures of the previous snapshot's groups come out right.
        """
        rekey: dict[GroupKey, GroupKey] = {}
        for key, group in list(self.by_key.items()):
            target = folds.get(key[1:])
            if target is None:
                continue
            carried[key] += group.carried
            group.carried = 0
            new_key = rekey[key] = self.key((key[0], *target))
            del self.by_key[key]
            into = self.by_key.get(new_key)
            if into is None:
                group.key = new_key
                self.by_key[new_key] = group
            else:
                into.absorb(group)
        for pair, target in folds.items():
            if pair[1] != OTHER:
                self.fold("work_type", pair[1])
            if target == CATCH_ALL and pair[0] != OTHER:
                self.fold("email_type", pair[0])
        return rekey
