"""A request budget per API key (`max_requests_per_second`), shared by its organisations.

Every HTTP attempt to the API (token and emails requests, retries included) takes a turn from
the budget of its key before it is sent. Turns are spaced at least ``1 / rate`` seconds apart,
so no one-second window ever holds more than ``rate`` requests (plus the one on its edge), and
waiting organisations are served round-robin: an organisation paging with four requests in
flight does not starve one that needs a single request. Waiters sleep on futures woken by one
timer (as aiolimiter does), not by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol


class Limiter(Protocol):
    """What the HTTP transport asks before each attempt: wait for a turn, return the seconds waited."""

    async def take(self) -> float: ...


class RequestBudget:
    """Round-robin turns between organisations, at most `rate` per second; None = no limit."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 0.0
        self._last = -1e9  # loop time of the last turn given
        self._next = 0.0  # loop time before which no further turn may start
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self.set_rate(rate)

    @property
    def rate(self) -> float | None:
        """Turns per second, or None when unlimited."""
        return 1.0 / self._interval if self._interval else None

    def set_rate(self, rate: float | None) -> None:
        """Change the budget live (on reload); waiters keep their places."""
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate if rate else 0.0
        self._next = self._last + self._interval
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting:
            self._schedule(asyncio.get_running_loop())

    def waiting(self) -> int:
        """Requests waiting for a turn right now."""
        return sum(1 for queue in self._waiting.values() for f in queue if not f.done())

    async def take(self, org: str) -> float:
        """Wait for `org`'s next turn; the seconds waited."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._interval:
            return 0.0
        if not self._waiting and now >= self._next:
            self._last, self._next = now, now + self._interval
            return 0.0
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.setdefault(org, deque()).append(future)
        self._schedule(loop)
        try:
            await future
        except asyncio.CancelledError:
            queue = self._waiting.get(org)
            if queue is not None:
                with contextlib.suppress(ValueError):
                    queue.remove(future)
                if not queue:
                    del self._waiting[org]
            raise
        return loop.time() - now

    def lane(self, org: str, on_wait: Callable[[float], None]) -> OrgLane:
        """The limiter one organisation's transport uses; `on_wait` records the time waited."""
        return OrgLane(self, org, on_wait)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self._waiting:
            self._timer = loop.call_at(self._next, self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        if now < self._next:  # the rate was lowered since this timer was set
            self._schedule(loop)
            return
        while self._waiting:
            org, queue = next(iter(self._waiting.items()))
            future = queue.popleft()
            if queue:
                self._waiting.move_to_end(org)  # round-robin: this organisation goes last
            else:
                del self._waiting[org]
            if not future.done():
                future.set_result(None)
                self._last, self._next = now, now + self._interval
                break
        self._schedule(loop)


class OrgLane:
    """One organisation's view of its key's budget: a `Limiter` for its HTTP transport."""

    def __init__(self, budget: RequestBudget, org: str, on_wait: Callable[[float], None]) -> None:
        self._budget = budget
        self._org = org
        self._on_wait = on_wait

    async def take(self) -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            waited = await self._budget.take(self._org)
        except asyncio.CancelledError:
            # Cut short (the poll deadline, a shutdown): the time waited still counts.
            self._on_wait(loop.time() - began)
            raise
        if waited > 0:
            self._on_wait(waited)
        return waited
