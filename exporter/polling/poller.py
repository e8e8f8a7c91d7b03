"""The poll loop of one organisation: fetch → aggregate → store.

This is the one place where errors become status: a failed poll is turned into
`poll_errors_total{reason}`, `up`=0 and one structured log event. Nothing here raises.

The poll's heavy CPU work (large pages, `finish()`, the new counters) runs in a worker thread;
pure Python there gives the GIL back every switch interval, so `/healthz` keeps answering. A
small poll's (a few thousand emails and groups: a millisecond or two) runs on the loop, where a
thread hop would cost more than the work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from functools import cache, partial
from typing import ParamSpec, Protocol, TypeVar

import structlog

from exporter.aggregation.builder import AggregationOptions, SnapshotBuilder
from exporter.domain.collector import pausing
from exporter.domain.errors import INTERNAL_REASON, PollError, RateLimitedError, RequestTimeoutError
from exporter.domain.scrub import scrub
from exporter.polling.store import Counted, OrgState
from exporter.settings.checks import DEADLINE_FACTOR
from exporter.upstream.auth import TokenProvider
from exporter.upstream.client import Page
from exporter.upstream.ratelimit import Pace
from exporter.upstream.transport import Sleep

_P = ParamSpec("_P")
_T = TypeVar("_T")
# Pages up to this many emails and bytes are aggregated on the loop (a few ms at most); larger
# ones in a worker thread, so a big page never stalls the loop while a thread hop stays rare
# (a page of 1000 emails is about 700 KB; a body of 30 MB in 1000 items holds huge labels,
# whose hashing and bounding alone would take ~40 ms).
INLINE_PAGE_ITEMS = 2000
INLINE_PAGE_BYTES = 2 * 1024 * 1024
# A poll's end (`finish()` and the new counters) costs about a microsecond per email and per
# group: up to this many of them together it runs on the loop (a millisecond or two), so many
# small organisations do not each pay a thread hop (and a wait for the GIL) per poll.
INLINE_SETTLE = 5000


@cache
def _worker() -> ThreadPoolExecutor:
    """The one thread every poller's CPU work runs in, one piece at a time: more threads would
    not run Python any faster, and would make the loop wait longer for the GIL."""
    return ThreadPoolExecutor(1, thread_name_prefix="poll-aggregate")


async def _off_loop(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """`fn(...)` in the poll worker thread, the collector paused meanwhile (see
    `exporter.domain.collector`); its exceptions are raised here."""
    run = partial(pausing(fn), *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_worker(), run)


class PageSource(Protocol):
    """Where a poll's pages come from (the API client, or a fake in tests)."""

    def pages(self) -> AsyncGenerator[Page, None]: ...


class PollPacer(Protocol):
    """The organisation's share of its API key's rate limit (`upstream.ratelimit.OrgLane`)."""

    def pace(self, need: int) -> Pace | None:
        """Whether a poll of `need` requests must wait for the gateway's window to reset."""
        ...

    def start_poll(self, seconds: float) -> None:
        """No wait inside the poll that starts now may outlast `seconds`."""
        ...

    def end_poll(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PollTiming:
    """When polls start and how long their results stay valid."""

    poll_interval: float = 30.0
    stale_after: float = 150.0
    # A poll never outlasts this many intervals, which leaves room for retries and Retry-After;
    # the settings refuse a request_timeout that would not fit in it.
    deadline_factor: float = DEADLINE_FACTOR
    # The longest a run of rate-limited polls stretches the interval.
    max_backoff_factor: float = 8.0


def _forget(*errors: BaseException) -> None:
    """Drop the tracebacks of a handled failure.

    A traceback keeps every frame it passed through alive, and with them what they held: the
    response body that was too large, the page that did not decode. It also points back at this
    poll's own frame, which holds the exception: a cycle that only the cyclic garbage collector
    frees, and it runs too rarely to keep up with 64 MiB bodies failing every poll.
    """
    for error in errors:
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            current.__traceback__ = None
            current = current.__cause__ or current.__context__


class Poller:
    """Polls one organisation forever (or once) and writes the results to its `OrgState`."""

    def __init__(
        self,
        state: OrgState,
        client: PageSource,
        auth: TokenProvider,
        *,
        options: AggregationOptions,
        timing: PollTiming,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
        sleep: Sleep = asyncio.sleep,
        logger: structlog.typing.FilteringBoundLogger | None = None,
        pacer: PollPacer | None = None,
    ) -> None:
        self.state = state
        self._client = client
        self._auth = auth
        self._options = options
        self._timing = timing
        self._clock = clock
        self._monotonic = monotonic
        self._cpu_clock = cpu_clock
        self._sleep = sleep
        self._log = logger or structlog.get_logger("exporter.polling.poller")
        self._pacer = pacer
        self._rate_limited_in_a_row = 0
        self._retry_after: float | None = None
        self._last_requests = 0  # requests the last poll sent (retries and token included)
        self._last_start = self._monotonic()  # when the last poll started, after any pacing

    @property
    def requests_last_poll(self) -> int:
        """Requests the last finished poll sent (0 before the first): what a key's rate limit
        must fit (`exporter.fleet.pollers.rate_limit_warnings`)."""
        return self._last_requests

    def adopt(self, other: Poller) -> None:
        """Poll with `other`'s client, token provider, options, timing and pacer from the next
        poll on.

        A reload that changed credentials, timing, aggregation or service-level settings keeps
        this poll loop, its state and its backoff; a poll in flight finishes as it began.
        """
        self._client, self._auth = other._client, other._auth
        self._options, self._timing, self._pacer = other._options, other._timing, other._pacer

    async def poll_once(self) -> bool:
        """Run one complete poll (after waiting for the gateway when it must); True on success."""
        await self._pace()
        started = self._last_start = self._monotonic()
        waited_before = self.state.rate_limit_wait
        sent_before = self.state.requests_sent()
        pacer = self._pacer
        if pacer is not None:
            pacer.start_poll(self._timing.poll_interval * self._timing.deadline_factor)
        try:
            ok = await self._poll()
        finally:
            if pacer is not None:
                pacer.end_poll()
        self._last_requests = self.state.requests_sent() - sent_before
        waited = self.state.rate_limit_wait - waited_before
        elapsed = self._monotonic() - started
        if waited > 0 and elapsed > self._timing.poll_interval:
            # Say so rather than silently stretching the interval: the rate limit is too low.
            self.state.record_rate_limit_overrun()
            self._log.warning(
                "poll_over_rate_limit",
                org=self.state.org,
                duration_seconds=round(elapsed, 3),
                rate_limit_wait_seconds=round(waited, 3),
                poll_interval_seconds=self._timing.poll_interval,
                advice="raise max_requests_per_second or poll_interval, or split the key's orgs",
            )
        return ok

    async def _pace(self) -> None:
        """Wait for the gateway's window to reset when the key has fewer requests left in it
        than this poll needs (the last poll's + 1), rather than draw 429s.

        The poll then starts late, by at most `stale_after` (waiting longer would leave the data
        stale longer than any poll could), and keeps its whole deadline. A reset further away is
        not believed: the poll goes ahead, and fails as rate limited if the gateway says no.
        """
        pace = self._pacer.pace(self._last_requests + 1) if self._pacer is not None else None
        if pace is None:
            return
        log = self._log.bind(org=self.state.org, reset_timestamp_seconds=round(pace.reset_at, 3))
        if pace.wait > self._timing.stale_after:
            log.debug(
                "poll_not_paced",
                wait_seconds=round(pace.wait, 3),
                reason="reset beyond stale_after",
            )
            return
        log.info(
            "poll_paced",
            wait_seconds=round(pace.wait, 3),
            reason=f"the API key has {pace.remaining} requests left in the gateway's window "
            f"and the poll needs {pace.needed}: waiting for the window's reset",
        )
        await self._sleep(pace.wait)
        self.state.observe_rate_limit_wait(pace.wait)

    async def _poll(self) -> bool:
        started, cpu_started = self._monotonic(), self._cpu_clock()
        throttled_before = self._throttled()
        waited_before = self.state.rate_limit_wait
        previous = self.state.snapshot
        builder = SnapshotBuilder(self._options, previous, self.state.reserved_series())
        pages = emails = 0
        reported: int | None = None
        log = self._log
        try:
            async with asyncio.timeout(self._timing.poll_interval * self._timing.deadline_factor):
                # aclosing: a failure here cancels the page requests still in flight at once.
                async with aclosing(self._client.pages()) as stream:
                    async for page in stream:
                        pages += 1
                        emails += len(page.emails)
                        if page.start == 0:
                            reported = page.total_items
                        if len(page.emails) > INLINE_PAGE_ITEMS or page.size > INLINE_PAGE_BYTES:
                            await _off_loop(builder.add, page.emails, page.details)
                        else:
                            builder.add(page.emails, page.details)
                        for reason, count in page.invalid.items():
                            builder.add_invalid(reason, count)
        except (PollError, TimeoutError) as exc:
            error = (
                exc
                if isinstance(exc, PollError)
                else self._deadline_error(throttled_before, waited_before, started)
            )
            self._fail(error.reason, str(error), started, pages, log)
            self._note_rate_limit(error)
            _forget(exc, error)
            del error
            return False
        except Exception as exc:  # a bug must not kill the loop; it is reported, not hidden
            self._crashed(exc, started, pages, log)
            return False
        self._rate_limited_in_a_row = 0
        self._retry_after = None
        now = self._clock()
        # After a gap longer than stale_after the change cannot be attributed: a new baseline.
        baseline = previous is not None and now - previous.taken_at <= self._timing.stale_after
        groups = len(previous.counts) if previous is not None else 0
        try:
            if emails + groups <= INLINE_SETTLE:
                counted = self._settle(builder, now, reported, baseline)
            else:
                counted = await _off_loop(self._settle, builder, now, reported, baseline)
        except Exception as exc:  # as above: a bug in the worker thread is reported, not fatal
            self._crashed(exc, started, pages, log)
            return False
        snapshot = counted.snapshot
        duration = self._monotonic() - started
        if not self.state.commit_success(counted, duration, self._auth.expires_at):
            # Another result was committed meanwhile (not by this poller): count on top of it.
            flow = snapshot.flow if baseline else None
            self.state.record_success(snapshot, duration, flow, self._auth.expires_at)
        if log.is_enabled_for(logging.INFO):  # its fields cost something: skipped when unseen
            log.info(
                "poll",
                org=self.state.org,
                outcome="success",
                duration_seconds=round(duration, 3),
                # The process's CPU time during the poll (its own cost when nothing else runs).
                cpu_seconds=round(self._cpu_clock() - cpu_started, 3),
                pages=pages,
                items=snapshot.unique_items,
                reported_items=reported,
                rate_limit_wait_seconds=round(self.state.rate_limit_wait - waited_before, 3),
                duplicates=snapshot.duplicates,
                invalid=sum(snapshot.invalid.values()),
                undated=snapshot.undated,
            )
        return True

    def _settle(
        self, builder: SnapshotBuilder, now: float, reported: int | None, baseline: bool
    ) -> Counted:
        """The snapshot and the state's new counters (run in a worker thread: pure CPU work).

        Safe off the loop: the builder belongs to this poll alone, the previous snapshot is
        frozen, and the state's counters are only read, to be replaced on the loop.
        """
        snapshot = builder.finish(now, reported, continuous=baseline)
        return self.state.prepare_success(snapshot, snapshot.flow if baseline else None)

    def _crashed(
        self,
        exc: Exception,
        started: float,
        pages: int,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        log.exception("poll_crashed", org=self.state.org, error_type=type(exc).__name__)
        self._fail(INTERNAL_REASON, f"internal error: {type(exc).__name__}", started, pages, log)
        _forget(exc)

    def _fail(
        self,
        reason: str,
        message: str,
        started: float,
        pages: int,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        duration = self._monotonic() - started
        expiry = self._auth.expires_at
        # The error boundary: what an upstream wrote reaches last_error, the landing page and
        # the log only bounded, without control characters and with configured secrets masked.
        message = scrub(message)
        self.state.record_failure(reason, message, duration, expiry, at=self._clock())
        log.warning(
            "poll",
            org=self.state.org,
            outcome="failure",
            reason=reason,
            error=message,
            duration_seconds=round(duration, 3),
            pages=pages,
        )

    def _throttled(self) -> int:
        """429 answers received so far, from any endpoint."""
        return sum(n for (_, code), n in self.state.api_requests.items() if code == "429")

    def _deadline_error(
        self, throttled_before: int, waited_before: float, started: float
    ) -> PollError:
        """Why a poll ran out of time: waiting out 429s, or the request budget for most of the
        poll, is rate limiting; anything else a timeout."""
        if self._throttled() > throttled_before:
            return RateLimitedError("rate limited (429) until the poll deadline", status=429)
        waited = self.state.rate_limit_wait - waited_before
        if waited > 0 and waited >= 0.5 * (self._monotonic() - started):
            return RateLimitedError(
                f"waited {waited:.3g}s for the key's rate limit (max_requests_per_second) until "
                "the poll deadline"
            )
        return RequestTimeoutError("poll deadline exceeded")

    def _note_rate_limit(self, error: PollError) -> None:
        if isinstance(error, RateLimitedError):
            self._rate_limited_in_a_row += 1
            self._retry_after = error.retry_after
        else:
            self._rate_limited_in_a_row = 0
            self._retry_after = None

    def next_delay(self, elapsed: float) -> float:
        """Seconds until the next poll should start, `elapsed` after this one started."""
        interval = self._timing.poll_interval
        delay = max(0.0, interval - elapsed)
        if self._rate_limited_in_a_row:
            retry_after = self._retry_after or 0.0
            if retry_after > self._timing.stale_after:
                # Not waited out (the data would go stale meanwhile, and a bogus far-future date
                # must not stop polling): the next poll tries on schedule.
                return delay
            # Back off further on every rate-limited poll in a row, and honour Retry-After.
            factor = min(self._timing.max_backoff_factor, 2.0 ** (self._rate_limited_in_a_row - 1))
            delay = max(delay, interval * factor, retry_after)
        return delay

    async def run(self, start_delay: float = 0.0) -> None:
        """Poll until cancelled; each poll starts `poll_interval` after the previous one started
        (after the wait for the gateway, when it had to wait)."""
        if start_delay > 0:
            await self._sleep(start_delay)
        while True:
            await self.poll_once()
            await self._sleep(self.next_delay(self._monotonic() - self._last_start))
