"""The label groups of one poll: raw item labels to bounded group keys, and their running totals.

Each distinct combination of raw labels is resolved once per poll: its values are bounded
(`exporter.aggregation.labels`), admitted under their caps or folded into `other`, and its key interned,
so that an email still in its group matches the previous snapshot's key by identity. The
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
        """The label value for `value` from upstream: bounded, and within its cap."""
        value = bound_label(value, self._max_label_length)
        admitted, folded = cap.admit(value)
        if folded:
            self.fold(label, value)
        return admitted

    def agent(self, value: str) -> str:
        """The label value of an agent, within the agent cap."""
        return self._admit(self._agents, "agent", value)

    def resolve(self, raw: RawLabels) -> Group:
        """The group of an item with these raw labels (first sight of the combination)."""
        state = self._admit(self._states, "state", raw[0] or UNKNOWN)
        email_type = self._admit(self._email_types, "email_type", raw[1] or UNKNOWN)
        if len(raw) == 4:
            name, work_type_id = raw[2], raw[3]
            chosen = (
                label_value(work_type_id, name) if self._by_id else label_value(name, work_type_id)
            )
            work_type = self._admit(self._work_types, "work_type", chosen)
            if name and work_type_id is not None and work_type_id != "" and work_type != OTHER:
                limit = self._max_label_length
                self.info[(bound_label(str(work_type_id), limit), bound_label(name, limit))] = None
        else:
            work_type = self._admit(self._work_types, "work_type", label_value(raw[2]))
        key = self.key((state, email_type, work_type))
        group = self.by_key.get(key)
        if group is None:
            waiting = state in self._waiting_states
            handling = is_handling(state, self._waiting_states)
            group = self.by_key[key] = Group(key, waiting, handling)
        limit = self._max_label_length
        if all(type(v) is not str or len(v) <= limit for v in raw):
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
