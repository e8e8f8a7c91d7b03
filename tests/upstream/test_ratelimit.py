"""The per-key request rate limiter (ratelimit): spacing, round-robin fairness, cancellation, live rate."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest

from exporter.domain.errors import RateLimitedError
from exporter.upstream.limit_headers import Announced
from exporter.upstream.ratelimit import GatewayWindow, OrgLane, Pace, RequestRateLimiter


async def _take_times(
    limiter: RequestRateLimiter, org: str, n: int, out: list[tuple[float, str]]
) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(n):
        await limiter.take(org)
        out.append((loop.time(), org))


async def test_unlimited_never_waits() -> None:
    limiter = RequestRateLimiter(None)
    assert [await limiter.take("a") for _ in range(100)] == [0.0] * 100
    assert limiter.rate is None


async def test_turns_are_spaced_by_the_rate() -> None:
    limiter = RequestRateLimiter(50.0)
    times: list[tuple[float, str]] = []
    await asyncio.gather(*(_take_times(limiter, f"org{i}", 5, times) for i in range(4)))
    stamps = sorted(t for t, _ in times)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.02 - 0.002, min(gaps)
    # Twenty turns at 50/s take about 0.38 s.
    assert 0.36 <= stamps[-1] - stamps[0] < 1.0


async def test_waiting_organisations_take_turns() -> None:
    limiter = RequestRateLimiter(200.0)
    order: list[str] = []

    async def burst(org: str, n: int) -> None:
        async def one() -> None:
            await limiter.take(org)
            order.append(org)

        await asyncio.gather(*(one() for _ in range(n)))

    # "big" queues 12 requests before "small" queues 3: small must not wait for all of big's.
    await asyncio.gather(burst("big", 12), burst("small", 3))
    first_small = [i for i, org in enumerate(order) if org == "small"]
    assert first_small[-1] <= 7, order
    assert Counter(order) == {"big": 12, "small": 3}


async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    limiter = RequestRateLimiter(20.0)
    await limiter.take("a")  # the next turn is 50 ms away
    waiter = asyncio.create_task(limiter.take("a"))
    await asyncio.sleep(0)
    assert limiter.waiting() == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.waiting() == 0
    assert await limiter.take("b") < 0.1


async def test_rate_changes_live() -> None:
    limiter = RequestRateLimiter(1.0)
    await limiter.take("a")
    slow = asyncio.create_task(limiter.take("a"))  # would wait a second
    await asyncio.sleep(0.01)
    limiter.set_rate(1000.0)  # the waiter keeps its place, at the new pace
    assert await asyncio.wait_for(slow, 2.0) < 0.5
    limiter.set_rate(None)
    assert await limiter.take("a") == 0.0


async def test_lane_reports_the_wait() -> None:
    limiter = RequestRateLimiter(20.0)
    waits: list[float] = []
    lane = limiter.lane("acme", waits.append)
    await lane.take("emails")
    await lane.take("emails")
    assert len(waits) == 1 and 0.02 < waits[0] < 0.2


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RequestRateLimiter(0.0)


# --- the gateway's window ---------------------------------------------------------------------

NOW = 1_800_000_000.0


def test_a_window_counts_the_requests_sent_between_answers() -> None:
    window = GatewayWindow()
    window.learn(Announced(25, 15, NOW + 8), NOW)
    for _ in range(5):
        window.spend(NOW)
    assert window.remaining == 10
    # An answer to a request sent before those five (it arrives late) does not raise the count.
    window.learn(Announced(25, 14, NOW + 8), NOW)
    assert window.remaining == 10
    # One that knows of more spending (another client of the key) lowers it.
    window.learn(Announced(25, 2, NOW + 8.4), NOW)
    assert window.remaining == 2 and window.reset_at == NOW + 8.4


def test_a_window_waits_for_its_reset_and_is_full_after_it() -> None:
    window = GatewayWindow()
    assert window.wait(10, NOW) == 0.0  # nothing known: no waiting
    window.learn(Announced(25, 5, NOW + 6), NOW)
    assert window.wait(5, NOW) == 0.0
    assert window.wait(11, NOW) == 6.0
    assert window.wait(100, NOW) == 6.0  # more than a window holds: wait for a full one
    assert window.wait(11, NOW + 6) == 0.0
    assert window.remaining == 25 and window.reset_at is None


def test_a_later_reset_starts_a_new_window() -> None:
    window = GatewayWindow()
    window.learn(Announced(25, 0, NOW + 3), NOW)
    window.learn(Announced(25, 24, NOW + 13), NOW + 1)  # the gateway's clock turned over early
    assert window.remaining == 24 and window.reset_at == NOW + 13


def test_a_window_without_a_reset_is_never_waited_for() -> None:
    window = GatewayWindow()
    window.learn(Announced(remaining=0), NOW)
    assert window.wait(1, NOW) == 0.0
    window.learn(Announced(remaining=7), NOW)
    assert window.remaining == 7  # no window to hold it to: the latest answer counts


def test_a_429_empties_the_window_until_its_retry_after() -> None:
    window = GatewayWindow()
    window.learn(Announced(25, 10, NOW + 5), NOW)
    window.throttled(20.0, NOW)
    assert window.remaining == 0 and window.wait(1, NOW) == 20.0


class Slept:
    """A sleep that moves a wall clock by what it sleeps."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock[0] += seconds


def lane_of(
    limiter: RequestRateLimiter, clock: list[float], waits: list[float], max_wait: float = 100.0
) -> tuple[OrgLane, Slept]:
    sleep = Slept(clock)
    return limiter.lane("acme", waits.append, max_wait=max_wait, sleep=sleep), sleep


async def test_a_spent_window_is_waited_for_and_counted() -> None:
    clock = [NOW]
    limiter = RequestRateLimiter(None, clock=lambda: clock[0])
    waits: list[float] = []
    lane, sleep = lane_of(limiter, clock, waits)
    lane.learn("emails", Announced(25, 2, NOW + 7))
    await lane.take("emails")
    await lane.take("emails")
    assert sleep.delays == []
    await lane.take("emails")  # the third would draw a 429: wait for the reset instead
    assert sleep.delays == [7.0] and waits == [7.0]
    assert limiter.window("emails").remaining == 24


async def test_the_organisations_of_a_key_share_its_window() -> None:
    clock = [NOW]
    limiter = RequestRateLimiter(None, clock=lambda: clock[0])
    waits: list[float] = []
    acme, acme_sleep = lane_of(limiter, clock, waits)
    other = limiter.lane("other", waits.append, max_wait=100.0, sleep=acme_sleep)
    acme.learn("emails", Announced(25, 1, NOW + 4))
    await acme.take("emails")
    await other.take("emails")  # acme spent the last one
    assert acme_sleep.delays == [4.0]
    # The token endpoint's window is its own.
    await other.take("token")
    assert acme_sleep.delays == [4.0]


async def test_a_wait_past_the_polls_deadline_fails_at_once() -> None:
    clock = [NOW]
    limiter = RequestRateLimiter(None, clock=lambda: clock[0])
    waits: list[float] = []
    lane, sleep = lane_of(limiter, clock, waits)
    lane.learn("emails", Announced(25, 0, NOW + 30))
    lane.start_poll(10.0)
    with pytest.raises(RateLimitedError) as info:
        await lane.take("emails")
    assert info.value.retry_after == 30.0 and sleep.delays == [] and waits == []
    lane.end_poll()
    assert lane.time_left() is None


async def test_a_reset_beyond_max_wait_is_not_believed() -> None:
    clock = [NOW]
    limiter = RequestRateLimiter(None, clock=lambda: clock[0])
    waits: list[float] = []
    lane, sleep = lane_of(limiter, clock, waits, max_wait=50.0)
    lane.learn("emails", Announced(25, 0, NOW + 100_000))
    await lane.take("emails")  # goes out: the gateway answers for itself
    assert sleep.delays == []
    lane.throttled("emails", 100_000.0)  # nor is a 429's far-off Retry-After shared
    lane.throttled("emails", 20.0)
    assert limiter.window("emails").reset_at == NOW + 100_000


def test_pace_says_how_long_a_poll_should_wait() -> None:
    clock = [NOW]
    limiter = RequestRateLimiter(None, clock=lambda: clock[0])
    lane = limiter.lane("acme", lambda _: None)
    assert lane.pace(11) is None  # nothing announced yet
    lane.learn("emails", Announced(25, 5, NOW + 6))
    assert lane.pace(5) is None
    assert lane.pace(11) == Pace(6.0, 5, 11, NOW + 6)


async def test_a_window_spent_while_waiting_for_a_turn_is_waited_for() -> None:
    # With max_requests_per_second too, a request that waited for its turn finds the window as
    # the others left it: two requests left, three sent at once, the third waits for the reset.
    clock = [NOW]
    limiter = RequestRateLimiter(50.0, clock=lambda: clock[0])
    waits: list[float] = []
    lane, sleep = lane_of(limiter, clock, waits)
    lane.learn("emails", Announced(25, 2, NOW + 7))
    await asyncio.gather(*(lane.take("emails") for _ in range(3)))
    assert sleep.delays == [7.0]
    assert limiter.window("emails").remaining == 24  # the third one, in the new window
