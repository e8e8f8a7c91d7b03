"""The poll loop's own rules: error classification at the deadline and the next poll's delay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from structlog.testing import capture_logs

from exporter.aggregation.builder import AggregationOptions
from exporter.domain.errors import RateLimitedError
from exporter.polling.poller import Poller, PollTiming
from exporter.polling.store import OrgState
from exporter.upstream.client import Page
from exporter.upstream.ratelimit import Pace
from tests.fakes import FakeSleep, NoAuth


class Stalls:
    """A page source that records `code` answers and then never finishes."""

    def __init__(self, state: OrgState, code: str) -> None:
        self.state, self.code = state, code

    async def pages(self) -> AsyncGenerator[Page, None]:
        self.state.observe_request("emails", self.code, 0.01)
        await asyncio.Event().wait()
        yield Page(0, 0, [])  # pragma: no cover


class RateLimited:
    def __init__(self, retry_after: float | None) -> None:
        self.retry_after = retry_after

    async def pages(self) -> AsyncGenerator[Page, None]:
        error = RateLimitedError("429", status=429)
        error.retry_after = self.retry_after
        raise error
        yield Page(0, 0, [])  # pragma: no cover


def poller(source: object, state: OrgState, interval: float = 30.0) -> Poller:
    timing = PollTiming(poll_interval=interval, stale_after=5 * interval, deadline_factor=3.0)
    return Poller(state, source, NoAuth(), options=AggregationOptions(), timing=timing)  # type: ignore[arg-type]


async def test_a_poll_that_runs_out_of_time_waiting_out_429s_is_rate_limited() -> None:
    state = OrgState("acme")
    p = poller(Stalls(state, "429"), state, interval=0.02)
    assert not await p.poll_once()
    assert state.last_error_reason == "rate_limited"
    assert p.next_delay(0.06) >= 0.02


async def test_a_poll_that_runs_out_of_time_otherwise_is_a_timeout() -> None:
    state = OrgState("acme")
    p = poller(Stalls(state, "200"), state, interval=0.02)
    assert not await p.poll_once()
    assert state.last_error_reason == "timeout"
    assert p.next_delay(0.06) == 0.0


async def test_retry_after_delays_the_next_poll_and_rate_limits_stretch_the_interval() -> None:
    state = OrgState("acme")
    p = poller(RateLimited(None), state)
    delays = []
    for _ in range(5):
        assert not await p.poll_once()
        delays.append(p.next_delay(1.0))
    assert delays == [30.0, 60.0, 120.0, 240.0, 240.0]
    q = poller(RateLimited(100.0), OrgState("acme"))
    await q.poll_once()
    assert q.next_delay(1.0) == 100.0  # within stale_after (150 s): waited out before the next


async def test_a_retry_after_beyond_stale_after_keeps_polls_on_schedule() -> None:
    # Waiting out 70 years (or the old one-hour cap, or even 151 s) would leave the data stale:
    # each poll tries on schedule and fails as rate_limited, without stretching the interval.
    for retry_after in (86400.0 * 365 * 70, 3600.0, 151.0):
        state = OrgState("acme")
        p = poller(RateLimited(retry_after), state)
        for _ in range(4):
            assert not await p.poll_once()
            assert p.next_delay(1.0) == 29.0
        assert state.poll_errors["rate_limited"] == 4


class Pages:
    """One empty page per poll, after `requests` requests."""

    def __init__(self, state: OrgState, requests: int) -> None:
        self.state, self.requests = state, requests

    async def pages(self) -> AsyncGenerator[Page, None]:
        for _ in range(self.requests):
            self.state.observe_request("emails", "200", 0.01)
        yield Page(0, 0, [])


class Pacer:
    """The key's window as a test sets it: `remaining` requests until `wait` seconds from now."""

    def __init__(self, remaining: int, wait: float) -> None:
        self.remaining, self.wait = remaining, wait
        self.asked: list[int] = []
        self.deadlines: list[float | None] = []

    def pace(self, need: int) -> Pace | None:
        self.asked.append(need)
        if need <= self.remaining:
            return None
        return Pace(self.wait, self.remaining, need, 1e9 + self.wait)

    def start_poll(self, seconds: float) -> None:
        self.deadlines.append(seconds)

    def end_poll(self) -> None:
        self.deadlines.append(None)


def paced(state: OrgState, pacer: Pacer, requests: int, sleep: FakeSleep) -> Poller:
    timing = PollTiming(poll_interval=2.0, stale_after=10.0, deadline_factor=3.0)
    return Poller(
        state,
        Pages(state, requests),
        NoAuth(),
        options=AggregationOptions(),
        timing=timing,
        sleep=sleep,
        pacer=pacer,
    )


async def test_a_poll_that_would_overdraw_the_gateways_window_waits_for_its_reset() -> None:
    state, sleep, pacer = OrgState("acme"), FakeSleep(), Pacer(remaining=5, wait=6.0)
    p = paced(state, pacer, 10, sleep)
    with capture_logs() as logs:
        assert await p.poll_once()  # nothing known of the last poll: needs 1, has 5
        assert await p.poll_once()  # the last one sent 10: needs 11, has 5
    assert pacer.asked == [1, 11]
    assert sleep.delays == [6.0] and state.rate_limit_wait == 6.0
    assert pacer.deadlines == [6.0, None, 6.0, None]  # every poll: 3 x poll_interval
    [event] = [e for e in logs if e["event"] == "poll_paced"]
    assert event["wait_seconds"] == 6.0 and "5 requests left" in event["reason"]
    assert "needs 11" in event["reason"]


async def test_a_reset_beyond_stale_after_is_not_waited_for() -> None:
    state, sleep, pacer = OrgState("acme"), FakeSleep(), Pacer(remaining=0, wait=10.5)
    p = paced(state, pacer, 10, sleep)
    assert await p.poll_once()
    assert sleep.delays == [] and state.rate_limit_wait == 0.0
