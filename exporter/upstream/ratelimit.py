"""The request rate limiter per API key (`max_requests_per_second`), shared by its organisations.

Every HTTP attempt to the API (token and emails requests, retries included) takes a turn from
its key's rate limiter before it is sent. Turns are spaced at least ``1 / rate`` seconds apart,
so no one-second window ever holds more than ``rate`` requests (plus the one on its edge), and
waiting organisations are served round-robin: an organisation paging with four requests in
flight does not starve one that needs a single request. Waiters sleep on futures woken by one
timer (as aiolimiter does), not by polling.

The key's rate limit at the gateway, as its answers announce it (`RateLimit-*` headers, a 429's
`Retry-After`), is kept here too, one `GatewayWindow` per endpoint, fed by every organisation of
the key: a request waits for the window's reset rather than draw a 429 when the window is spent,
and a poll asks (`OrgLane.pace`) whether its requests fit before it starts. A wait is never longer
than `max_wait` (`stale_after`: a longer one is not believed, the request goes out and the gateway
answers), and inside a poll never past the poll's deadline (the request fails as rate limited).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from exporter.domain.errors import RateLimitedError
from exporter.upstream.limit_headers import Announced

# Two announced resets this close together belong to the same window (`Reset` has whole seconds).
SAME_WINDOW = 1.5
# Times a request re-checks a window after waiting for its reset (another may have spent it).
MAX_GATEWAY_WAITS = 3


class Limiter(Protocol):
    """What the HTTP transport asks before each attempt and tells after each answer."""

    async def take(self, endpoint: str) -> float:
        """Wait for a turn; the seconds waited. Raises RateLimitedError when it cannot be had
        within the poll's deadline."""
        ...

    def learn(self, endpoint: str, announced: Announced) -> None:
        """An answer's rate-limit headers."""
        ...

    def throttled(self, endpoint: str, seconds: float) -> None:
        """A 429 asked to wait `seconds`."""
        ...

    def time_left(self) -> float | None:
        """Seconds before the current poll's deadline; None outside a poll."""
        ...


@dataclass(slots=True)
class GatewayWindow:
    """The gateway's rate-limit window of one API key on one endpoint, as its answers announced it.

    Pure: times are Unix seconds passed in. Between answers the requests sent are counted
    against `remaining` here, so requests in flight are not spent twice; an answer only lowers
    the count of the current window (answers to earlier requests arrive out of order), and a
    later `reset` starts a new window. Once the reset passes, the window is full again.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None

    def learn(self, said: Announced, now: float) -> None:
        """Take in one answer's headers."""
        if said.limit is not None:
            self.limit = said.limit
        self._roll(now)
        known = self.reset_at
        later = said.reset_at is not None and (known is None or said.reset_at > known + SAME_WINDOW)
        if said.remaining is not None:
            same = not later and self.remaining is not None and known is not None
            self.remaining = min(self.remaining or 0, said.remaining) if same else said.remaining
        if said.reset_at is not None:
            self.reset_at = said.reset_at if later or known is None else max(known, said.reset_at)
        self._roll(now)

    def throttled(self, seconds: float, now: float) -> None:
        """A 429: nothing left until `seconds` from now."""
        self._roll(now)
        self.remaining = 0
        self.reset_at = max(self.reset_at or 0.0, now + seconds)

    def spend(self, now: float) -> None:
        """One request goes out."""
        self._roll(now)
        if self.remaining is not None:
            self.remaining = max(0, self.remaining - 1)

    def wait(self, need: int, now: float) -> float:
        """Seconds until `need` requests fit (a need above the limit: a full window); 0 when
        they fit now, or when the window or its reset is not known."""
        self._roll(now)
        if self.remaining is None or self.reset_at is None:
            return 0.0
        if self.limit is not None:
            need = min(need, self.limit)
        return 0.0 if self.remaining >= need else self.reset_at - now

    def _roll(self, now: float) -> None:
        if self.reset_at is not None and now >= self.reset_at:
            self.remaining, self.reset_at = self.limit, None


@dataclass(frozen=True, slots=True)
class Pace:
    """Why a poll must wait before it starts: `remaining` < `needed` until `reset_at`."""

    wait: float
    remaining: int
    needed: int
    reset_at: float


class RequestRateLimiter:
    """Round-robin turns between organisations, at most `rate` per second; None = no limit."""

    def __init__(self, rate: float | None, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, GatewayWindow] = {}
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
        """Change the rate live (on reload); waiters keep their places."""
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

    def window(self, endpoint: str) -> GatewayWindow:
        """The gateway's window of this key on `endpoint`."""
        window = self._windows.get(endpoint)
        if window is None:
            window = self._windows[endpoint] = GatewayWindow()
        return window

    def gateway_wait(self, endpoint: str, need: int) -> float:
        """Seconds until `need` requests fit the gateway's announced window (0: now, or unknown)."""
        return self.window(endpoint).wait(need, self._clock())

    def learn(self, endpoint: str, announced: Announced) -> None:
        """An answer's rate-limit headers, for every organisation of the key."""
        if not announced.empty:
            self.window(endpoint).learn(announced, self._clock())

    def throttled(self, endpoint: str, seconds: float) -> None:
        """A 429 asked every organisation of the key to wait `seconds`."""
        self.window(endpoint).throttled(seconds, self._clock())

    def spend(self, endpoint: str) -> None:
        """A request of the key goes out."""
        self.window(endpoint).spend(self._clock())

    def lane(
        self,
        org: str,
        on_wait: Callable[[float], None],
        *,
        max_wait: float = math.inf,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> OrgLane:
        """The limiter one organisation's transport uses; `on_wait` records the time waited."""
        return OrgLane(self, org, on_wait, max_wait=max_wait, sleep=sleep, monotonic=monotonic)

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
    """One organisation's view of its key's rate limit: the `Limiter` of its HTTP transport, and
    what its poller asks before a poll (`pace`) and tells about the poll's deadline."""

    def __init__(
        self,
        limiter: RequestRateLimiter,
        org: str,
        on_wait: Callable[[float], None],
        *,
        max_wait: float = math.inf,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limiter = limiter
        self._org = org
        self._on_wait = on_wait
        self._max_wait = max_wait
        self._sleep = sleep
        self._monotonic = monotonic
        self._deadline: float | None = None

    async def take(self, endpoint: str = "emails") -> float:
        """Wait for the gateway's window (when spent) and for a turn of the key's rate, then
        count the request against the window; the seconds waited (also when cut short)."""
        waited = 0.0
        began = self._monotonic()
        try:
            for attempt in range(MAX_GATEWAY_WAITS + 1):
                last = attempt == MAX_GATEWAY_WAITS
                wait = self._gateway_wait(endpoint)
                if wait > 0 and not last:
                    await self._sleep(wait)
                    waited += wait
                    continue
                turn = await self._limiter.take(self._org)
                waited += turn
                # Waiting for the turn let others spend the window: wait for its reset again.
                # (Without a wait, nothing ran between the check and the count below.)
                if turn == 0 or last or self._gateway_wait(endpoint) <= 0:
                    break
            self._limiter.spend(endpoint)
        except asyncio.CancelledError:
            # Cut short (the poll deadline, a shutdown): the time waited still counts.
            waited = max(waited, self._monotonic() - began)
            raise
        finally:
            if waited > 0:
                self._on_wait(waited)
        return waited

    def _gateway_wait(self, endpoint: str) -> float:
        """Seconds until the window has room for a request: 0 when it has, or when the reset is
        beyond max_wait (not believed: the gateway will answer for itself). Raises when the
        wait would outlast the poll's deadline."""
        wait = self._limiter.gateway_wait(endpoint, 1)
        if wait <= 0 or wait > self._max_wait:
            return 0.0
        left = self.time_left()
        if left is not None and wait > left:
            error = RateLimitedError(
                f"{endpoint} rate limit of the API key is spent until its reset in {wait:.0f} s, "
                "after the poll's deadline"
            )
            error.retry_after = wait
            raise error
        return wait

    def learn(self, endpoint: str, announced: Announced) -> None:
        self._limiter.learn(endpoint, announced)

    def throttled(self, endpoint: str, seconds: float) -> None:
        if seconds <= self._max_wait:  # a longer one would never be waited for
            self._limiter.throttled(endpoint, seconds)

    def pace(self, need: int, endpoint: str = "emails") -> Pace | None:
        """How long a poll of `need` requests should wait for the window's reset; None: not."""
        window = self._limiter.window(endpoint)
        wait = self._limiter.gateway_wait(endpoint, need)
        if wait <= 0 or window.remaining is None or window.reset_at is None:
            return None
        return Pace(wait, window.remaining, need, window.reset_at)

    def start_poll(self, seconds: float) -> None:
        """A poll starts that must end within `seconds`: no wait inside it may outlast that."""
        self._deadline = self._monotonic() + seconds

    def end_poll(self) -> None:
        self._deadline = None

    def time_left(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._monotonic())
