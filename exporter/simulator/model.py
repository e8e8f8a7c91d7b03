"""A pure, event-driven queue model of an email contact centre; time only moves by `advance_to`."""

from __future__ import annotations

import heapq
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from .entities import (
    INBOUND,
    PICKUP_STATE,
    WAITING,
    Agent,
    Email,
    WorkType,
    make_agents,
    new_email,
    object_id,
)
from .history import Ledger

_ARRIVAL, _DUE, _STAFF = 0, 1, 2
# Pickups remembered for the ground truth (`/_sim/truth`); the oldest are forgotten first.
MAX_PICKUP_LOG = 100_000


@dataclass(frozen=True, slots=True)
class PickupEvent:
    """An agent took an email that was waiting: the ground truth of a pickup."""

    at: float
    email_id: int
    email_type: str
    work_type_id: str
    queued: float


@dataclass(frozen=True, slots=True)
class Stream:
    """Poisson arrivals of one email type into one work type."""

    work_type: WorkType
    email_type: str
    rate: float  # per second, at speed 1


@dataclass(frozen=True, slots=True)
class Staffing:
    """Agents log on and off every `interval` seconds to keep the waiting backlog near `target`."""

    minimum: int
    maximum: int
    target: int
    interval: float = 60.0


@dataclass(frozen=True, slots=True)
class ModelParams:
    """Rates, durations (mean seconds at speed 1) and routing probabilities."""

    work_types: tuple[WorkType, ...]
    streams: tuple[Stream, ...]
    agents: int = 140
    agents_on_duty: int = 110
    supervisors: int = 4
    staffing: Staffing | None = None
    speed: float = 1.0
    queue_timeout: float = 300.0
    handle: float = 360.0
    wrap: float = 60.0
    draft_park: float = 1800.0
    review_wait: float = 900.0
    review: float = 120.0
    p_reassign: float = 0.2
    p_draft: float = 0.1
    p_draft_reassign: float = 0.15
    p_review: float = 0.08
    p_transfer: float = 0.07
    # Inbound emails that continue the thread of an email that left at least `repeat_after`
    # seconds before (a customer writing again).
    p_repeat: float = 0.1
    repeat_after: float = 120.0


class QueueModel:
    """Emails arrive, wait, are picked up by the agent idle longest, move through states and leave."""

    def __init__(
        self, params: ModelParams, rng: random.Random, start: float, *, first_id: int = 42_000
    ) -> None:
        self.params = params
        self.rng = rng
        self.now = start
        self.emails: dict[int, Email] = {}  # insertion order is id order: ids only grow
        self.arrived = 0
        self.departed = 0
        self.transitions: Counter[tuple[str | None, str | None]] = Counter()
        self.pickup_log: deque[PickupEvent] = deque(maxlen=MAX_PICKUP_LOG)
        self.arrival_factor = 1.0
        self.staffing = params.staffing
        self.agents = make_agents(rng, params.agents, "")
        self.supervisors = make_agents(rng, params.supervisors, "5")
        self.work_type_names = {wt.id: wt.name for wt in params.work_types}
        # The ground truth of the handling KPIs (`history`), and the threads of recent
        # departures a repeat contact may continue, drawn by a generator of their own so that
        # the rest of the model's random sequence stays what it was.
        self.ledger = Ledger()
        self._recent: deque[tuple[float, int]] = deque(maxlen=2000)
        self._repeat_rng = random.Random(hash(rng.getstate()[1][:8]))  # noqa: S311 - simulation
        self._next_id = first_id
        self._seq = 77_000_000 + rng.randrange(1_000_000)
        self._events: list[tuple[float, int, int, int, int]] = []
        self._serial = 0
        self._versions: dict[int, int] = {}
        self._waiting: list[tuple[float, int]] = []
        self._on_duty = {a.id for a in self.agents[: params.agents_on_duty]}
        self._idle: deque[Agent] = deque(a for a in self.agents if a.id in self._on_duty)
        self._holding: dict[str, int] = {}  # agent id -> email id it works on
        self._drafts: dict[str, list[int]] = {}  # agent id -> drafts ready to resume
        for index in range(len(params.streams)):
            self._schedule_arrival(index, start)
        if self.staffing is not None:
            self._push(start + self.staffing.interval / params.speed, _STAFF, 0, 0)

    # -- public ---------------------------------------------------------------------------------

    def advance_to(self, now: float) -> None:
        """Process every event up to `now`; a `now` in the past is ignored."""
        while self._events and self._events[0][0] <= now:
            at, _, kind, key, version = heapq.heappop(self._events)
            self.now = at
            if kind == _ARRIVAL:
                self._arrival(key)
            elif kind == _DUE:
                if self._versions.get(key) == version and key in self.emails:
                    self._due(self.emails[key])
            else:
                self._staff()
            self._dispatch()
        self.now = max(self.now, now)

    def retune(self, *, arrival_factor: float, staffing: Staffing | None) -> None:
        """Change the arrival rates and the staffing policy from now on."""
        self.arrival_factor = arrival_factor
        self.staffing = staffing

    def inject(self, email: Email) -> None:
        """Add an email built outside (a pre-existing backlog); it keeps its state and times."""
        self.emails[email.id] = email
        self.ledger.arrived(email, self.now, injected=True)
        self.arrived += 1  # its way into `state` happened before the model started: no transition
        if email.state in WAITING:
            heapq.heappush(self._waiting, (email.queued, email.id))
        self._next_id = max(self._next_id, email.id + 1)

    def occupy_idle_agents(self, make: Callable[[], Email]) -> None:
        """Give every idle agent an email already in progress: a centre busy at the start."""
        while self._idle:
            email = make()
            self.inject(email)
            self._take(self._idle.popleft(), email, email.state)

    def next_id(self) -> int:
        """Reserve an email id."""
        self._next_id += 1
        return self._next_id - 1

    def next_seq(self) -> int:
        """Reserve an event sequence number."""
        self._seq += 1
        return self._seq

    def waiting_count(self) -> int:
        """Emails waiting for an agent."""
        return sum(1 for e in self.emails.values() if e.state in WAITING)

    # -- events ---------------------------------------------------------------------------------

    def _push(self, at: float, kind: int, key: int, version: int) -> None:
        self._serial += 1
        heapq.heappush(self._events, (at, self._serial, kind, key, version))

    def _schedule_arrival(self, index: int, after: float) -> None:
        rate = self.params.streams[index].rate * self.params.speed * self.arrival_factor
        if rate > 0:
            self._push(after + self.rng.expovariate(rate), _ARRIVAL, index, 0)

    def _timer(self, email: Email, mean: float) -> None:
        version = self._versions.get(email.id, 0) + 1
        self._versions[email.id] = version
        delay = self.rng.expovariate(1.0 / mean) / self.params.speed
        self._push(self.now + delay, _DUE, email.id, version)

    def _arrival(self, index: int) -> None:
        stream = self.params.streams[index]
        self._schedule_arrival(index, self.now)
        manual = stream.email_type == "ManualOutboundEmail"
        if manual and not self._on_duty:
            return  # agents write manual outbound emails; nobody is logged on to write one
        # A busy agent saves a new manual email as a draft and comes back to it later.
        state = "Queued" if not manual else "Active" if self._idle else "Draft"
        email = new_email(
            self.rng,
            email_id=self.next_id(),
            seq=self.next_seq(),
            work_type=stream.work_type,
            email_type=stream.email_type,
            now=self.now,
            state=state,
        )
        self._continue_thread(email)
        self.emails[email.id] = email
        self.ledger.arrived(email, self.now)
        self.arrived += 1
        self.transitions[(None, state)] += 1
        if state == "Active":
            self._take(self._idle.popleft(), email, "Active")
        elif state == "Draft":
            email.agent = self.rng.choice([a for a in self.agents if a.id in self._on_duty])
            email.reply_object_id = object_id(self.rng, self.now, email.work_type_id, 1)
            self._timer(email, self.params.draft_park)
        else:
            heapq.heappush(self._waiting, (email.queued, email.id))
            self._timer(email, self.params.queue_timeout)

    def _continue_thread(self, email: Email) -> None:
        """Maybe make a new inbound email a reply on the thread of an email that left."""
        p = self.params
        if email.email_type != INBOUND or p.p_repeat <= 0 or not self._recent:
            return
        if self._repeat_rng.random() >= p.p_repeat:
            return
        cutoff = self.now - p.repeat_after / p.speed
        eligible = 0
        for left, _ in self._recent:
            if left > cutoff:
                break
            eligible += 1
        if eligible:
            email.thread_id = self._recent[self._repeat_rng.randrange(eligible)][1]

    def _due(self, email: Email) -> None:
        p, rng, state = self.params, self.rng, email.state
        if state == "Queued":
            if rng.random() < p.p_reassign and len(p.work_types) > 1:
                self._requeue(email, "Reassigned")
            else:
                self._move(email, "Queued2")
        elif state in ("Active", "TransferredActive", "ReassignedActive"):
            roll = rng.random() if state == "Active" else 1.0
            if roll < p.p_draft:
                self._release(email)
                email.reply_object_id = object_id(rng, self.now, email.work_type_id, 1)
                self._move(email, "Draft")
                self._timer(email, p.draft_park)
            elif roll < p.p_draft + p.p_review:
                self._release(email)
                self._move(email, "Review")
                if self.supervisors:
                    self._timer(email, p.review_wait)
            elif roll < p.p_draft + p.p_review + p.p_transfer and len(p.work_types) > 1:
                self._release(email)
                email.agent = None
                self._requeue(email, "Transferred")
            else:
                self._wrap(email)
        elif state == "DraftActive":
            self._wrap(email)
        elif state == "Draft":
            self._draft_ready(email)
        elif state == "Review":
            email.agent = self.rng.choice(self.supervisors)
            self._move(email, "ReviewActive")
            self._timer(email, p.review)
        elif state in ("Wrap", "ReviewActive"):
            self._depart(email)

    def _wrap(self, email: Email) -> None:
        if email.reply_object_id is None:
            email.reply_object_id = object_id(self.rng, self.now, email.work_type_id, 1)
        self._move(email, "Wrap")
        self._timer(email, self.params.wrap)

    def _draft_ready(self, email: Email) -> None:
        owner = email.agent
        on_duty = [a for a in self.agents if a.id in self._on_duty]
        if not on_duty or owner is None:
            return  # nobody can resume it; it stays parked
        reassign = owner.id not in self._on_duty or self.rng.random() < self.params.p_draft_reassign
        if reassign:
            owner = self.rng.choice(on_duty)
            email.agent = owner
            if email.state == "ReassignedDraft":
                email.last_modified, email.seq = self.now, self.next_seq()
            else:
                self._move(email, "ReassignedDraft")
        self._drafts.setdefault(owner.id, []).append(email.id)

    def _requeue(self, email: Email, state: str) -> None:
        others = [wt for wt in self.params.work_types if wt.id != email.work_type_id]
        email.work_type_id = self.rng.choice(others).id
        self._move(email, state)
        heapq.heappush(self._waiting, (email.queued, email.id))

    def _staff(self) -> None:
        policy = self.staffing
        if policy is None:
            return
        waiting = self.waiting_count()
        if waiting > policy.target * 1.1 and len(self._on_duty) < policy.maximum:
            for agent in [a for a in self.agents if a.id not in self._on_duty][:2]:
                self._on_duty.add(agent.id)
                if agent.id not in self._holding:
                    self._idle.append(agent)
        elif waiting < policy.target * 0.9 and len(self._on_duty) > policy.minimum:
            leaving = list(self._idle)[:2] or [a for a in self.agents if a.id in self._on_duty][:2]
            for agent in leaving:
                self._on_duty.discard(agent.id)
                if agent in self._idle:
                    self._idle.remove(agent)
                # Drafts waiting for an agent who logs off go to a colleague.
                for email_id in self._drafts.pop(agent.id, []):
                    self._draft_ready(self.emails[email_id])
        self._push(self.now + policy.interval / self.params.speed, _STAFF, 0, 0)

    # -- agents ---------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        still_idle: deque[Agent] = deque()
        queue_empty = False
        while self._idle:
            agent = self._idle.popleft()
            drafts = self._drafts.get(agent.id)
            if drafts:
                self._take(agent, self.emails[drafts.pop(0)], "DraftActive")
                continue
            email = None if queue_empty else self._pop_waiting()
            if email is None:
                queue_empty = True
                still_idle.append(agent)
            else:
                self._take(agent, email, PICKUP_STATE[email.state])
        self._idle = still_idle

    def _pop_waiting(self) -> Email | None:
        while self._waiting:
            _, email_id = heapq.heappop(self._waiting)
            email = self.emails.get(email_id)
            if email is not None and email.state in WAITING:
                return email
        return None

    def _take(self, agent: Agent, email: Email, state: str) -> None:
        if email.state in WAITING:
            event = PickupEvent(
                self.now, email.id, email.email_type, email.work_type_id, email.queued
            )
            self.pickup_log.append(event)
        self._holding[agent.id] = email.id
        email.agent = agent
        email.active = self.now
        if email.state != state:
            self._move(email, state)
        else:
            self.ledger.took(email)
        self._timer(email, self.params.handle)

    def _release(self, email: Email) -> None:
        agent = email.agent
        if agent is not None and self._holding.get(agent.id) == email.id:
            del self._holding[agent.id]
            if agent.id in self._on_duty:
                self._idle.append(agent)

    def _move(self, email: Email, state: str) -> None:
        self.transitions[(email.state, state)] += 1
        email.state = state
        email.last_modified = self.now
        email.seq = self.next_seq()
        self.ledger.moved(email, self.now)

    def _depart(self, email: Email) -> None:
        self._release(email)
        self.transitions[(email.state, None)] += 1
        del self.emails[email.id]
        self._versions.pop(email.id, None)
        self.departed += 1
        self.ledger.left(email, self.now)
        self._recent.append((self.now, email.thread_id))
