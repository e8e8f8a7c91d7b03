"""The per-key request rate limiter (ratelimit): spacing, round-robin fairness, cancellation, live rate."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest

from exporter.upstream.ratelimit import RequestRateLimiter


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
    await lane.take()
    await lane.take()
    assert len(waits) == 1 and 0.02 < waits[0] < 0.2


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RequestRateLimiter(0.0)
