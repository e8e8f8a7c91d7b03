"""The `large` and `uniform` scenarios: a big queue generated once, frozen, and served from
pre-encoded items.

`large` looks like a real centre (most emails waiting, a few work types, realistic subjects and
addresses); `uniform` spreads its emails evenly over the 13 states besides Invalid, the 3 email
types and 100 work types, with the shortest field values, so that decoding is cheap and the
exporter's own work per email weighs the most.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Final

import msgspec

from .entities import (
    PICKUP_STATE,
    WAITING,
    Agent,
    Email,
    WorkType,
    make_agents,
    new_email,
    object_id,
    to_item,
)
from .query import Filters, Query, email_list, page_bounds

_STATE_SHARE: Final = (
    ("Queued", 30),
    ("Queued2", 25),
    ("Active", 15),
    ("Wrap", 4),
    ("Draft", 6),
    ("DraftActive", 2),
    ("Review", 3),
    ("ReviewActive", 1),
    ("Transferred", 3),
    ("TransferredActive", 2),
    ("Reassigned", 4),
    ("ReassignedDraft", 1),
    ("ReassignedActive", 2),
    ("Invalid", 2),
)
_EMAIL_TYPE_SHARE: Final = (
    ("InboundEmail", 85),
    ("CampaignOutboundEmail", 10),
    ("ManualOutboundEmail", 5),
)
_SPAN: Final = 8 * 3600.0  # emails were queued over the last eight hours
_CACHE: Final = 32


class StaticQueue:
    """`count` emails that never change; `advance_to` is a no-op so every poll sees the same list."""

    def __init__(
        self,
        count: int,
        work_types: tuple[WorkType, ...],
        rng: random.Random,
        now: float,
        *,
        uniform: bool = False,
    ) -> None:
        if uniform:
            work_types = UNIFORM_WORK_TYPES
        self.work_type_names = {wt.id: wt.name for wt in work_types}
        generate = _uniform if uniform else _generate
        self.emails: list[Email] = generate(count, work_types, rng, now)
        encoder = msgspec.json.Encoder()
        self._plain = [encoder.encode(to_item(e, self.work_type_names, False)) for e in self.emails]
        # The extended item is the plain one with the two name fields appended.
        self._extra = [
            encoder.encode(to_item(e, self.work_type_names, True))[len(plain) - 1 :]
            for e, plain in zip(self.emails, self._plain, strict=True)
        ]
        self._selections: OrderedDict[Filters, list[int]] = OrderedDict()

    def advance_to(self, now: float) -> None:
        """Nothing moves in a static queue."""

    def render(self, query: Query, page_cap: int, *, offset: int = 0) -> bytes:
        """The EmailList for a request; selections are cached per filter set."""
        selected = self._select(query.filters)
        start, end = page_bounds(query, len(selected), page_cap)
        shifted = max(0, start - offset)
        end = max(shifted, end - offset)
        if query.extended:
            items = [self._plain[i][:-1] + self._extra[i] for i in selected[shifted:end]]
        else:
            items = [self._plain[i] for i in selected[shifted:end]]
        return email_list(items, len(selected), query.start)

    def _select(self, filters: Filters) -> list[int]:
        cached = self._selections.get(filters)
        if cached is None:
            if filters == Filters():
                cached = list(range(len(self.emails)))
            else:
                index = {id(e): i for i, e in enumerate(self.emails)}
                cached = [index[id(e)] for e in filters.select(self.emails)]
            self._selections[filters] = cached
            if len(self._selections) > _CACHE:
                self._selections.popitem(last=False)
        else:
            self._selections.move_to_end(filters)
        return cached


def _generate(
    count: int, work_types: tuple[WorkType, ...], rng: random.Random, now: float
) -> list[Email]:
    agents = make_agents(rng, max(10, count // 20), "")
    states = rng.choices([s for s, _ in _STATE_SHARE], [w for _, w in _STATE_SHARE], k=count)
    types = rng.choices(
        [t for t, _ in _EMAIL_TYPE_SHARE], [w for _, w in _EMAIL_TYPE_SHARE], k=count
    )
    emails = []
    for i in range(count):
        queued = now - _SPAN * (count - i) / count  # id order is queue-time order
        email = new_email(
            rng,
            email_id=1_000_000 + i,
            seq=80_000_000 + i,
            work_type=work_types[i % len(work_types)],
            email_type=types[i],
            now=queued,
            state=states[i],
        )
        state = states[i]
        if state not in WAITING and state != "Invalid":
            # Every non-waiting state has been with an agent, so it has an active time.
            email.active = queued + min(60.0, now - queued) * rng.random()
            email.agent = rng.choice(agents)
            email.last_modified = email.active
            if state not in PICKUP_STATE.values():
                email.reply_object_id = object_id(rng, email.active, email.work_type_id, 1)
        emails.append(email)
    return emails


UNIFORM_STATES: Final = tuple(state for state, _ in _STATE_SHARE if state != "Invalid")
UNIFORM_WORK_TYPES: Final = tuple(WorkType(str(200 + n), f"W{n:02d}", "w@x.io") for n in range(100))


def _uniform(
    count: int, work_types: tuple[WorkType, ...], rng: random.Random, now: float
) -> list[Email]:
    """Email i in state i mod 13, email type i // 13 mod 3, work type i // 39 mod 100; every
    field as short as it can be (ids and times keep their usual form)."""
    del rng  # the spread is exact, nothing is drawn
    types = [t for t, _ in _EMAIL_TYPE_SHARE]
    agents = [Agent(id=f"a{n}", name=f"n{n}") for n in range(max(10, count // 20))]
    emails = []
    for i in range(count):
        state = UNIFORM_STATES[i % len(UNIFORM_STATES)]
        work_type = work_types[(i // 39) % len(work_types)]
        queued = now - _SPAN * (count - i) / count
        email = Email(
            id=1_000_000 + i, thread_id=5_000_000 + i, um_id="u", interaction_id=1,
            work_type_id=work_type.id, email_type=types[(i // 13) % len(types)], state=state,
            sent=queued, received=queued, start=queued, queued=queued, last_modified=queued,
            seq=1, email_object_id="e", from_address="a@b.c", to_address="c@d.e", subject="s",
        )  # fmt: skip
        if state not in WAITING:
            email.active = queued + 30.0
            email.agent = agents[i % len(agents)]
        emails.append(email)
    return emails
