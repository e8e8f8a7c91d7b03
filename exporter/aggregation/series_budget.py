"""The series budget: what each label combination costs, and which ones fold into `other`.

`max_series` bounds the series one organisation exports, all families together. The families
that grow with the queue's label values are priced here, per unit of what they are keyed by:

- a *pair* (email_type, work_type): the families keyed by the pair;
- a *group* (state, email_type, work_type): every zero-filled state of a pair, and any other
  state the pair holds;
- a *dated group*: a group with a dated email, which also has an oldest-email timestamp and age;
- an *agent* (agent, state) of the per-agent gauge.

Each family declares what it grows with (`Family(..., per="pair")`); the costs are summed from
those declarations (`exporter.metrics.families.series_cost`, a histogram costing its buckets,
+Inf, `_count` and `_sum`) and handed in, so a family added later is priced from then on. Series
that do not grow with label values (the exporter's own families, state transitions) are reserved
before any pair is placed.

Placing is deterministic and stable: pairs that had series in the previous snapshot keep them
first, then new pairs by size (most emails first, then by name). A pair that does not fit folds
into (email_type, `other`), and if that does not fit either, into (`other`, `other`), whose
place is reserved whenever anything folds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exporter.domain.models import PairKey
from exporter.domain.names import OTHER

CATCH_ALL: PairKey = (OTHER, OTHER)
# The exporter's own series per organisation besides its request counters and transitions (up,
# polls, errors by reason, two request-duration histograms, invalid and overflow counters, the
# API's rate-limit and certificate gauges per endpoint...),
# reserved before any pair is placed; tests hold the exported count under it.
OWN_SERIES = 80


@dataclass(frozen=True, slots=True)
class SeriesCost:
    """What one unit of each kind costs, in series (derived from the family declarations)."""

    pair: int
    group: int
    dated_group: int
    agent: int


@dataclass(slots=True)
class PairUse:
    """What a pair holds in one poll: its emails, and its states with and without dates."""

    emails: int = 0
    states: set[str] = field(default_factory=set)
    dated: set[str] = field(default_factory=set)

    def merge(self, other: PairUse) -> None:
        self.emails += other.emails
        self.states |= other.states
        self.dated |= other.dated


class SeriesBudget:
    """Places pairs and agents within `limit` series, folding the rest (pure, no I/O)."""

    def __init__(self, limit: int, cost: SeriesCost, zero_fill: Iterable[str]) -> None:
        self.limit = limit
        self.cost = cost
        self._zero_fill = frozenset(zero_fill)

    def surely_fits(self, pairs: int, groups: int, agents: int, reserved: int) -> bool:
        """Whether `pairs` pairs holding `groups` groups (and `agents` agent keys) fit whatever
        their states: the most they can cost is within the limit, so nothing can fold (a
        small organisation's poll skips the planning)."""
        cost = self.cost
        zero_filled = pairs * len(self._zero_fill)
        most = pairs * cost.pair + (zero_filled + groups) * cost.group
        most += groups * cost.dated_group + agents * cost.agent
        return reserved + most <= self.limit

    def pair_cost(self, use: PairUse) -> int:
        cost = self.cost
        groups = len(self._zero_fill | use.states)
        return cost.pair + cost.group * groups + cost.dated_group * len(use.dated)

    def plan_pairs(
        self, uses: Mapping[PairKey, PairUse], keep: Iterable[PairKey], reserved: int
    ) -> tuple[dict[PairKey, PairKey], int]:
        """Where each pair that must fold goes, and the series the placed pairs cost.

        `keep` are the pairs that had series before (they are placed first); `reserved` is
        spent before anything. Pairs missing from the returned mapping keep their own series.
        """
        total = reserved + sum(self.pair_cost(use) for use in uses.values())
        if total <= self.limit:
            return {}, total - reserved
        every_state: set[str] = set()
        for use in uses.values():
            every_state |= use.states
        catch_all = PairUse(states=set(every_state), dated=set(every_state))
        remaining = self.limit - reserved - self.pair_cost(catch_all)
        placed: dict[PairKey, PairUse] = {}
        folds: dict[PairKey, PairKey] = {}
        kept = [pair for pair in keep if pair in uses]
        kept.sort(key=lambda p: (-uses[p].emails, p))
        kept_set = set(kept)
        new = sorted((p for p in uses if p not in kept_set), key=lambda p: (-uses[p].emails, p))
        for pair in (*kept, *new):
            if pair == CATCH_ALL:
                continue
            use = uses[pair]
            for target in (pair, (pair[0], OTHER)):
                before = placed.get(target)
                merged = PairUse()
                if before is not None:
                    merged.merge(before)
                merged.merge(use)
                delta = self.pair_cost(merged) - (self.pair_cost(before) if before else 0)
                if delta <= remaining:
                    remaining -= delta
                    placed[target] = merged
                    if target != pair:
                        folds[pair] = target
                    break
            else:
                folds[pair] = CATCH_ALL
                placed.setdefault(CATCH_ALL, PairUse()).merge(use)
        if CATCH_ALL in uses:
            placed.setdefault(CATCH_ALL, PairUse()).merge(uses[CATCH_ALL])
        return folds, sum(self.pair_cost(use) for use in placed.values())

    def plan_agents(
        self, counts: Mapping[tuple[str, str], int], keep: Iterable[tuple[str, str]], room: int
    ) -> dict[tuple[str, str], tuple[str, str]]:
        """Which (agent, state) keys fold into (`other`, state) within `room` series."""
        per = self.cost.agent
        if per * len(counts) <= room:
            return {}
        kept = {key for key in keep if key in counts}
        order = sorted(counts, key=lambda k: (k not in kept, -counts[k], k))
        # The (other, state) keys any fold may need are paid for first.
        room -= per * len({key[1] for key in counts})
        folds: dict[tuple[str, str], tuple[str, str]] = {}
        for key in order:
            if key[0] == OTHER:
                continue
            if per <= room:
                room -= per
            else:
                folds[key] = (OTHER, key[1])
        return folds
