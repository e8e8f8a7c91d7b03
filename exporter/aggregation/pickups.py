"""Pickups: the emails an agent took since the previous poll (SPEC §6), each judged against its
group's service level on the group's clock.

The rule, written only here: an email is picked up when first seen in a state outside the
waiting states other than `Invalid`, after having been seen waiting in an earlier poll (its
previous group's state was a waiting one, or it turned `Invalid` while waiting and is still
watched), or, when it is new since the previous poll, with an `activeTime` later than its
`queuedTime`. Each email is counted once while it stays in the list. The first poll (a restart)
is a baseline: emails already out of the waiting states in it were picked up before the exporter
watched and are not counted.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass

from exporter.aggregation.dating import parse_timestamp, queued_at
from exporter.domain.models import Email, EmailId, GroupKey, PairKey, Pickup
from exporter.domain.names import INVALID_STATE
from exporter.servicelevels.policy import ServiceLevel


@dataclass(frozen=True, slots=True)
class _Candidate:
    email_id: EmailId
    email: Email


class PickupDetector:
    """Pickups of one poll, from what the previous one remembered.

    Whether an email was waiting at the previous poll is its previous group's state; besides
    that the memory is `picked` (counted already) and `watched` (turned Invalid while waiting,
    so still watched), both of the previous snapshot. The new memory holds only ids present in
    this poll, so it is pruned as emails leave the list.
    """

    __slots__ = ("_candidates", "_waiting_states", "first_poll", "picked",
                 "previous_picked", "previous_watched", "watched")  # fmt: skip

    def __init__(
        self,
        previous_watched: Set[EmailId],
        previous_picked: Set[EmailId],
        *,
        waiting_states: Set[str],
        first_poll: bool,
    ) -> None:
        self.previous_watched = previous_watched
        self.previous_picked = previous_picked
        self.first_poll = first_poll
        self._waiting_states = waiting_states
        self.watched: set[EmailId] = set()
        self.picked: set[EmailId] = set()
        self._candidates: list[_Candidate] = []

    def was_waiting(self, email_id: EmailId, old: GroupKey | None) -> bool:
        """Whether the previous poll saw the email waiting (or watched it)."""
        return (old is not None and old[0] in self._waiting_states) or (
            email_id in self.previous_watched
        )

    def not_waiting(
        self, email_id: EmailId, email: Email, old: GroupKey | None, was_waiting: bool
    ) -> None:
        """An email outside the waiting states, not picked before; `old` is its previous group
        (None: new) and `was_waiting` what `was_waiting` said of it."""
        if email.state == INVALID_STATE:
            if was_waiting:
                self.watched.add(email_id)  # not a pickup, but keep watching it
            return
        new = old is None
        if was_waiting or (new and not self.first_poll and self._active_after_queued(email)):
            self.picked.add(email_id)
            self._candidates.append(_Candidate(email_id, email))

    def _active_after_queued(self, email: Email) -> bool:
        """Whether the item says it was picked up after it was queued."""
        active = parse_timestamp(email.active_time)
        queued = parse_timestamp(email.queued_time)
        return active is not None and queued is not None and active > queued

    def pickups(
        self,
        now: float,
        level: Callable[[PairKey], ServiceLevel],
        bounds: Sequence[float],
        pair_of: Callable[[EmailId], PairKey],
    ) -> list[Pickup]:
        """The pickups found, judged at `now` (the poll's time) on each group's clock.

        `bounds` are the wait histogram's bucket bounds; each pickup carries its bucket.
        `pair_of` gives an email's final group, after any folding into `other`.
        """
        out = []
        for candidate in self._candidates:
            email = candidate.email
            queued = queued_at(email)
            if queued is None:
                continue  # no time to measure from: not counted (it is in `undated`)
            active = parse_timestamp(email.active_time)
            exact = active is not None and queued <= active
            picked_at = min(active, now) if exact and active is not None else now
            pair = pair_of(candidate.email_id)
            lvl = level(pair)
            met = lvl.clock.elapsed(queued, picked_at) < lvl.target
            wait = max(0.0, picked_at - queued)
            out.append(Pickup(pair, wait, bisect_left(bounds, wait), met, exact))
        return out
