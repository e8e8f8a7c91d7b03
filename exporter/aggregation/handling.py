"""Handling KPIs (SPEC §10): what happens to an email after it waits, from consecutive polls.

Fed by the snapshot builder's single pass over the emails, and only for the emails that need
it: an email new since the previous poll is given a slot in the per-email memory
(`EmailMemory`), an email whose state changed is noted; an email still in its group costs
nothing here. The rest happens once per poll in `finish`, when the poll's time is known:

- a departure (an id of the previous snapshot missing from this one) of an email whose
  beginning was seen ends its last state's stay (`state_dwell_seconds`) and, from a handling
  state, is a handled email (`handle_seconds` from its start of handling, `resolution_seconds`
  from its receivedTime); its thread is remembered for `thread_memory`, `max_threads` at most;
- a state change ends the old state's stay, and entering a handling state for the first time
  starts handling (`dating.handling_start`);
- a new email's delivery lag is observed, and it is a repeat contact when its thread belongs to
  an email that left the list at an earlier poll, within `thread_memory`.

An email present at the first poll (or at the first after a gap longer than `stale_after`) was
not seen to begin: nothing is observed of it, although its thread is still remembered when it
leaves. A handling state is any state outside the waiting states other than `Invalid`, so an
email withdrawn from a waiting state is not a handled one.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, replace
from itertools import islice
from typing import TYPE_CHECKING

from exporter.aggregation.dating import delivery_lag, handling_start, received_at
from exporter.domain.models import Email, EmailId, EmailMemory, GroupKey, HandlingKpis, PairKey
from exporter.domain.names import AGENT_LOAD_BUCKETS, INVALID_STATE

if TYPE_CHECKING:
    from exporter.aggregation.groups import Group

NAN = math.nan
# Free slots beyond this many (and beyond the tracked emails) are given back: the arrays are
# rebuilt for the tracked emails alone, so a queue that shrank does not keep its peak's memory.
COMPACT_AFTER = 4096


def is_handling(state: str, waiting_states: Set[str]) -> bool:
    """Whether an email in `state` is being handled: not waiting for an agent, not `Invalid`."""
    return state not in waiting_states and state != INVALID_STATE


def thread_hash(thread_id: str | int | None) -> int:
    """An 8-byte key of a threadId, never 0 (0: none). Alvaria's thread ids are int32 numbers
    as text: those are kept as their value (+ 1), exactly; any other text is hashed (blake2b)."""
    if thread_id is None or thread_id == "":
        return 0
    text = thread_id if type(thread_id) is str else str(thread_id)
    if len(text) < 19 and text.isascii() and text.isdigit() and (text[0] != "0" or text == "0"):
        return int(text) + 1
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1


@dataclass(frozen=True, slots=True)
class HandlingOptions:
    """Which handling KPIs are measured (a family on `metric_denylist` is not), and the
    bounds of the thread memory."""

    handle: bool = True
    resolution: bool = True
    dwell: bool = True
    delivery_lag: bool = True
    repeat_contacts: bool = True
    agents: bool = True  # agents_working and agent_load
    work_type_info: bool = True
    thread_memory: float = 7 * 86400.0
    max_threads: int = 100_000

    @property
    def tracking(self) -> bool:
        """Whether emails are remembered from one poll to the next."""
        return self.handle or self.resolution or self.dwell or self.repeat_contacts

    def email_fields(self) -> frozenset[str]:
        """The optional `Email` fields the enabled KPIs read (the decoder skips the others)."""
        fields = set()
        if self.resolution or self.delivery_lag:
            fields.add("received_time")
        if self.delivery_lag:
            fields.add("sent_time")
        if self.repeat_contacts:
            fields.add("thread_id")
        if self.agents:
            fields.add("work_handler_id")
        if self.work_type_info:
            fields.add("work_type_id")
        return frozenset(fields)


def _empty_memory() -> EmailMemory:
    return EmailMemory({}, array("q"), array("d"), array("d"), array("d"), array("q"),
                       bytearray(), {})  # fmt: skip


class HandlingTracker:
    """The handling KPIs of one poll, from the previous poll's memory (see the module doc)."""

    def __init__(
        self,
        options: HandlingOptions,
        previous: HandlingKpis | None,
        *,
        first_poll: bool,
    ) -> None:
        self.options = options
        self.first_poll = first_poll
        memory = previous.memory if previous and previous.memory else _empty_memory()
        self._memory_in = memory
        self.previous_slots: Mapping[EmailId, int] = memory.slots
        self._previous_threads = memory.threads
        self._previous_info = previous.work_type_info if previous else {}
        # The previous poll's arrays, read as they are and copied before the first write
        # (`_own`; C-level copies, about a millisecond per 100k emails): a poll in which no
        # tracked email arrived, moved or left keeps them.
        self._owned = False
        self._free = memory.free
        self._since, self._start, self._received = memory.since, memory.start, memory.received
        self._thread, self._observed = memory.thread, memory.observed
        self._new: dict[EmailId, int] = {}
        # Noted in the pass, settled in `finish`: (slot, state left, handling start candidate),
        # slots of new emails with their start candidate, delivery lags, repeat candidates.
        self._moves: list[tuple[int, str, float]] = []
        self._arrivals: list[tuple[int, float]] = []
        self._pending: list[tuple[int, EmailId, Email]] = []  # new emails of the current page
        self._lags: list[tuple[EmailId, float]] = []
        self._repeats: list[tuple[EmailId, float]] = []
        # The agent ids of the emails in handling states (None: no agent); only the counts
        # per agent leave this poll.
        self.handlers: list[str | int | None] = []

    def _own(self) -> None:
        if not self._owned:
            self._owned = True
            self._free = array("q", self._free)
            self._since, self._start = array("d", self._since), array("d", self._start)
            self._received, self._thread = array("d", self._received), array("q", self._thread)
            self._observed = bytearray(self._observed)

    def _slot(self) -> int:
        self._own()
        if self._free:
            return self._free.pop()
        self._since.append(NAN)
        self._start.append(NAN)
        self._received.append(NAN)
        self._thread.append(0)
        self._observed.append(0)
        return len(self._since) - 1

    def arrive(self, email_id: EmailId, email: Email, group: Group) -> None:
        """A new email: give it a slot; what it is read for at first sight waits for the end
        of its page (`first_sight`)."""
        if self.first_poll:
            if self.options.repeat_contacts:  # not seen to begin: only its thread is of use
                slot = self._new[email_id] = self._slot()
                self._observed[slot] = 0
                self._pending.append((slot, email_id, email))
            return
        slot = self._new[email_id] = self._slot()
        self._observed[slot] = 1
        self._start[slot] = NAN
        self._arrivals.append((slot, handling_start(email, math.inf) if group.handling else NAN))
        self._pending.append((slot, email_id, email))

    def first_sight(self, details: Callable[[], Mapping[int, Email]] | None) -> None:
        """Read the page's new emails' receivedTime, sentTime and threadId: from `details`
        when the page was decoded without them (then decoded for them now), else their own."""
        if not self._pending:
            return
        found = details() if details is not None else {}
        options = self.options
        observed = not self.first_poll
        for slot, email_id, email in self._pending:
            full = found.get(email_id, email) if type(email_id) is int else email
            if observed:
                if options.resolution and (received := received_at(full)) is not None:
                    self._received[slot] = received
                if options.delivery_lag and (lag := delivery_lag(full)) is not None:
                    self._lags.append((email_id, lag))
            if options.repeat_contacts and (thread := thread_hash(full.thread_id)):
                self._thread[slot] = thread
                departed = self._previous_threads.get(thread)
                if observed and departed is not None:
                    self._repeats.append((email_id, departed))
        self._pending.clear()

    def move(self, email_id: EmailId, email: Email, old: GroupKey, group: Group) -> None:
        """A state change of an email the previous poll saw."""
        slot = self.previous_slots.get(email_id)
        if slot is None:
            return
        starts = group.handling and math.isnan(self._start[slot])
        self._moves.append((slot, old[0], handling_start(email, math.inf) if starts else NAN))

    def finish(
        self,
        now: float,
        *,
        continuous: bool,
        previous_members: Mapping[EmailId, GroupKey],
        members: Mapping[EmailId, GroupKey],
        waiting_states: Set[str],
        info: Mapping[tuple[str, str], None],
        series_ttl: float,
        max_info: int,
    ) -> HandlingKpis:
        """The poll's observations at `now`, its gauges and the memory for the next poll.

        `continuous`: the previous poll was recent enough (within `stale_after`) for changes
        to be dated by this one; otherwise this poll is a new baseline and observes nothing.
        `members` gives every email's final group (after any folding into `other`).
        """
        options = self.options
        observe = continuous and not self.first_poll
        dwell: list[tuple[str, float]] = []
        handle: list[tuple[PairKey, float]] = []
        resolution: list[tuple[PairKey, float]] = []
        memory: EmailMemory | None = None
        if options.tracking:
            departed = previous_members.keys() - members.keys()
            if departed or self._new or self._moves or not observe:
                self._own()
                if not observe:
                    self._observed[:] = bytes(len(self._observed))
                self._settle_moves(now, dwell)
                for slot, start in self._arrivals:
                    self._since[slot] = now
                    self._start[slot] = min(start, now)
                slots = dict(self.previous_slots)
                threads = self._depart(now, slots, departed, previous_members, waiting_states,
                                       (dwell, handle, resolution))  # fmt: skip
                slots.update(self._new)
                memory = self._memory(slots, threads)
            else:  # nothing arrived, moved or left: the memory stays, but for old threads
                memory = replace(self._memory_in, threads=self._threads(now, []))
        repeats: Counter[PairKey] = Counter()
        lags: list[tuple[str, float]] = []
        if observe:
            cutoff = now - options.thread_memory
            for email_id, left in self._repeats:
                if left >= cutoff:
                    repeats[members[email_id][1:]] += 1
            lags = [(members[email_id][1], lag) for email_id, lag in self._lags]
        return HandlingKpis(
            handle=tuple(handle) if options.handle else None,
            resolution=tuple(resolution) if options.resolution else None,
            dwell=tuple(dwell) if options.dwell else None,
            delivery_lag=tuple(lags) if options.delivery_lag else None,
            repeats=dict(repeats) if options.repeat_contacts else None,
            agents_working=len(loads) if (loads := self._loads()) is not None else None,
            agent_load=agent_load(loads) if loads is not None else None,
            work_type_info=self._info(now, info, series_ttl, max_info),
            memory=memory,
        )

    def _loads(self) -> Counter[str | int | None] | None:
        """Emails in handling states per agent (None when not measured)."""
        if not self.options.agents:
            return None
        loads = Counter(self.handlers)  # counted in C
        loads.pop(None, None)
        loads.pop("", None)
        return loads

    def _settle_moves(self, now: float, dwell: list[tuple[str, float]]) -> None:
        since, start, observed = self._since, self._start, self._observed
        for slot, left, begins in self._moves:
            if observed[slot]:
                dwell.append((left, max(0.0, now - since[slot])))
            since[slot] = now
            if not math.isnan(begins):
                start[slot] = min(begins, now)

    def _depart(
        self,
        now: float,
        slots: dict[EmailId, int],
        departed: Set[EmailId],
        previous_members: Mapping[EmailId, GroupKey],
        waiting_states: Set[str],
        out: tuple[
            list[tuple[str, float]], list[tuple[PairKey, float]], list[tuple[PairKey, float]]
        ],
    ) -> Mapping[int, float]:
        """Observe the departures and free their slots; the thread memory with theirs added."""
        dwell, handle, resolution = out
        since, start, received, observed = self._since, self._start, self._received, self._observed
        thread, free = self._thread, self._free
        hashes: list[int] = []
        for email_id in departed:
            slot = slots.pop(email_id, None)
            if slot is None:
                continue
            state, email_type, work_type = previous_members[email_id]
            if observed[slot]:
                dwell.append((state, max(0.0, now - since[slot])))
                if is_handling(state, waiting_states):
                    if not math.isnan(begun := start[slot]):
                        handle.append(((email_type, work_type), max(0.0, now - begun)))
                    if not math.isnan(came := received[slot]):
                        resolution.append(((email_type, work_type), max(0.0, now - came)))
            if hashed := thread[slot]:
                hashes.append(hashed)
            since[slot] = start[slot] = received[slot] = NAN
            thread[slot] = observed[slot] = 0
            free.append(slot)
        return self._threads(now, hashes)

    def _threads(self, now: float, departed: list[int]) -> Mapping[int, float]:
        """The thread memory with `departed` added at `now`, the oldest beyond `max_threads`
        and those older than `thread_memory` forgotten (the previous one when unchanged)."""
        options = self.options
        previous = self._previous_threads
        if not options.repeat_contacts:
            return {}
        cutoff = now - options.thread_memory
        oldest = next(iter(previous.values()), now)
        if not departed and oldest >= cutoff and len(previous) <= options.max_threads:
            return previous
        threads = dict(previous)
        for hashed in departed:
            threads.pop(hashed, None)  # inserted again last: the memory stays in departure order
            threads[hashed] = now
        stale = 0
        for departed_at in threads.values():
            if departed_at >= cutoff:
                break
            stale += 1
        for hashed in list(islice(threads, max(stale, len(threads) - options.max_threads))):
            del threads[hashed]
        return threads

    def _info(
        self,
        now: float,
        seen: Mapping[tuple[str, str], None],
        series_ttl: float,
        limit: int,
    ) -> dict[tuple[str, str], float]:
        """(work_type_id, work_type) pairs carried within `series_ttl`, the latest `limit`."""
        if not self.options.work_type_info:
            return {}
        kept = {pair: t for pair, t in self._previous_info.items() if now - t <= series_ttl}
        for pair in seen:
            kept.pop(pair, None)
            kept[pair] = now
        if len(kept) > limit:
            by_age = sorted(kept.items(), key=lambda item: item[1])
            kept = dict(by_age[len(kept) - limit :])
        return kept

    def _memory(self, slots: dict[EmailId, int], threads: Mapping[int, float]) -> EmailMemory:
        if len(self._free) > max(COMPACT_AFTER, len(slots)):
            return self._compacted(slots, threads)
        return EmailMemory(slots, self._free, self._since, self._start, self._received,
                           self._thread, self._observed, threads)  # fmt: skip

    def _compacted(self, slots: dict[EmailId, int], threads: Mapping[int, float]) -> EmailMemory:
        """The memory rebuilt for the tracked emails alone (the queue shrank a lot)."""
        order = list(slots.values())
        return EmailMemory(
            {email_id: n for n, email_id in enumerate(slots)},
            array("q"),
            array("d", (self._since[s] for s in order)),
            array("d", (self._start[s] for s in order)),
            array("d", (self._received[s] for s in order)),
            array("q", (self._thread[s] for s in order)),
            bytearray(self._observed[s] for s in order),
            threads,
        )


def agent_load(loads: Mapping[str | int | None, int]) -> tuple[tuple[int, ...], int]:
    """Cumulative counts of agents by emails held, over AGENT_LOAD_BUCKETS and +Inf, and the
    emails they hold together."""
    by_load = Counter(loads.values())  # few distinct loads: the rest is cheap
    counts = [
        sum(n for held, n in by_load.items() if held <= bound) for bound in AGENT_LOAD_BUCKETS
    ]
    return (*counts, len(loads)), sum(loads.values())
