"""The life of every simulated email, as it really happened: the ground truth of the handling
KPIs (SPEC §10), served by `GET /_sim/truth`.

The queue model reports each arrival, state change, pickup and departure here; each email's
record holds its stays (state, work type, when it began and ended, the activeTime its items
showed meanwhile), when its handling truly started (its first entry into a handling state),
and when and from which state it left. Departed emails and repeat contacts are remembered in
bounded logs, the oldest forgotten first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .entities import WAITING, Email

# Departed emails and repeat contacts remembered for the ground truth.
MAX_LOG = 100_000


def handling(state: str) -> bool:
    """A handling state: not waiting for an agent, not Invalid (SPEC §10)."""
    return state not in WAITING and state != "Invalid"


@dataclass(slots=True)
class Stay:
    """One stay of an email in one state (and work type)."""

    state: str
    work_type_id: str
    began: float
    active: float | None  # the activeTime the items showed during the stay
    ended: float | None = None


@dataclass(slots=True)
class Life:
    """One email from its arrival (`injected`: it was in the queue before the model started)."""

    id: int
    email_type: str
    thread_id: int
    arrived: float
    received: float
    sent: float
    injected: bool
    stays: list[Stay] = field(default_factory=list)
    handling_start: float | None = None
    departed: float | None = None


@dataclass(frozen=True, slots=True)
class Repeat:
    """A new email on the thread of an earlier email that had already left the list."""

    email_id: int
    email_type: str
    work_type_id: str
    at: float
    thread_id: int
    previous_departure: float


class Ledger:
    """Records what happens to every email of one queue model."""

    def __init__(self) -> None:
        self.present: dict[int, Life] = {}
        self.departed: deque[Life] = deque(maxlen=MAX_LOG)
        self.repeats: deque[Repeat] = deque(maxlen=MAX_LOG)
        # thread id -> when its latest email left the list (bounded like the logs).
        self.thread_departures: dict[int, float] = {}

    def arrived(self, email: Email, now: float, *, injected: bool = False) -> None:
        """An email entered the list at `now` (or, injected, before the model started)."""
        began = email.last_modified if injected else now
        life = Life(email.id, email.email_type, email.thread_id, email.queued if injected else now,
                    email.received, email.sent, injected)  # fmt: skip
        self.present[email.id] = life
        self._begin(life, email, began)
        if injected:
            return
        left = self.thread_departures.get(email.thread_id)
        if left is not None:
            self.repeats.append(
                Repeat(email.id, email.email_type, email.work_type_id, now, email.thread_id, left)
            )

    def moved(self, email: Email, now: float) -> None:
        """The email is in a new state from `now` (`email.state` already changed)."""
        life = self.present.get(email.id)
        if life is None:
            return
        life.stays[-1].ended = now
        self._begin(life, email, now)

    def took(self, email: Email) -> None:
        """An agent took the email without a state change (it arrived active)."""
        life = self.present.get(email.id)
        if life is not None:
            life.stays[-1].active = email.active

    def left(self, email: Email, now: float) -> None:
        """The email left the list at `now`."""
        life = self.present.pop(email.id, None)
        if life is None:
            return
        life.stays[-1].ended = now
        life.departed = now
        self.departed.append(life)
        self.thread_departures.pop(life.thread_id, None)
        self.thread_departures[life.thread_id] = now
        if len(self.thread_departures) > MAX_LOG:
            del self.thread_departures[next(iter(self.thread_departures))]

    def _begin(self, life: Life, email: Email, now: float) -> None:
        life.stays.append(Stay(email.state, email.work_type_id, now, email.active))
        if life.handling_start is None and handling(email.state):
            life.handling_start = now


def life_json(life: Life, names: dict[str, str]) -> dict[str, Any]:
    """An email's record as the truth endpoint shows it (work types by name)."""
    last = life.stays[-1]
    return {
        "id": str(life.id),
        "emailType": life.email_type,
        "thread": str(life.thread_id),
        "arrived": life.arrived,
        "injected": life.injected,
        "received": life.received,
        "sent": life.sent,
        "handlingStart": life.handling_start,
        "departed": life.departed,
        "lastState": last.state,
        "workType": names.get(last.work_type_id, last.work_type_id),
        "stays": [
            {
                "state": stay.state,
                "workType": names.get(stay.work_type_id, stay.work_type_id),
                "began": stay.began,
                "ended": stay.ended,
                "activeTime": stay.active,
            }
            for stay in life.stays
        ],
    }
