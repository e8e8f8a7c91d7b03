"""A poll's heavy CPU work runs in a worker thread: the event loop keeps running meanwhile.
Small polls end on the loop (no thread hop per organisation when there are many small ones).

Each blocking step below waits for a callback that only the event loop can run; had the step
run on the loop, the callback could never fire and the step would give up (failing the poll).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping

import pytest

import exporter.polling.poller as poller_module
from exporter.aggregation.builder import AggregationOptions, SnapshotBuilder
from exporter.domain.models import Email, Flow, Snapshot
from exporter.polling.poller import (
    INLINE_PAGE_BYTES,
    INLINE_PAGE_ITEMS,
    INLINE_SETTLE,
    Poller,
    PollTiming,
)
from exporter.polling.store import Counted, OrgState
from exporter.upstream.client import Page
from tests.fakes import Clock, NoAuth

GIVE_UP = 10.0  # seconds a blocked step waits for the loop before it fails the poll


def e(id: str, state: str = "Queued", wt: str = "Billing") -> Email:
    return Email(id=id, state=state, email_type="InboundEmail", work_type_name=wt)


def many(first: int = 0, count: int = INLINE_SETTLE + 1) -> list[Email]:
    """More emails than a poll ends on the loop with."""
    return [e(str(i)) for i in range(first, first + count)]


class ListSource:
    def __init__(self, emails: list[Email]) -> None:
        self.emails = emails

    async def pages(self) -> AsyncGenerator[Page, None]:
        yield Page(0, len(self.emails), list(self.emails), len(self.emails))


LOOPS: list[asyncio.AbstractEventLoop] = []  # the test's event loop, for worker threads


def needs_the_loop() -> None:
    """Block until the event loop runs a callback; fail if it does not within GIVE_UP."""
    ran = threading.Event()
    LOOPS[-1].call_soon_threadsafe(ran.set)
    if not ran.wait(GIVE_UP):
        raise AssertionError("the event loop did not run while this step did")


def make_poller(state: OrgState, source: ListSource, clock: Clock) -> Poller:
    timing = PollTiming(poll_interval=30, stale_after=150)
    return Poller(state, source, NoAuth(), options=AggregationOptions(), timing=timing, clock=clock)


async def run_with_loop(p: Poller) -> bool:
    LOOPS.append(asyncio.get_running_loop())
    return await p.poll_once()


class BlockingFinish(SnapshotBuilder):
    def finish(
        self, now: float, reported_items: int | None = None, *, continuous: bool = True
    ) -> Snapshot:
        needs_the_loop()
        return super().finish(now, reported_items, continuous=continuous)


class BlockingAdd(SnapshotBuilder):
    def add(
        self, emails: Iterable[Email], details: Callable[[], Mapping[int, Email]] | None = None
    ) -> None:
        needs_the_loop()
        super().add(emails, details)


class BlockingPrepare(OrgState):
    def prepare_success(self, snapshot: Snapshot, flow: Flow | None) -> Counted:
        needs_the_loop()
        return super().prepare_success(snapshot, flow)


async def test_finish_runs_while_the_loop_keeps_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller_module, "SnapshotBuilder", BlockingFinish)
    p = make_poller(OrgState("acme"), ListSource(many()), Clock(1_800_000_000.0))
    assert await run_with_loop(p)
    assert p.state.up and p.state.snapshot is not None
    assert p.state.snapshot.unique_items == INLINE_SETTLE + 1


def finishing(note: Callable[[], None]) -> type[SnapshotBuilder]:
    """A SnapshotBuilder that calls `note()` where its `finish` runs."""

    class Noting(SnapshotBuilder):
        def finish(
            self, now: float, reported_items: int | None = None, *, continuous: bool = True
        ) -> Snapshot:
            note()
            return super().finish(now, reported_items, continuous=continuous)

    return Noting


async def test_the_poll_worker_runs_with_the_collector_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    enabled: list[bool] = []
    monkeypatch.setattr(
        poller_module, "SnapshotBuilder", finishing(lambda: enabled.append(gc.isenabled()))
    )
    p = make_poller(OrgState("acme"), ListSource(many()), Clock(1_800_000_000.0))
    assert await run_with_loop(p)
    assert enabled == [False] and gc.isenabled()


async def test_prepare_success_runs_while_the_loop_keeps_running() -> None:
    state = BlockingPrepare("acme")
    clock = Clock(1_800_000_000.0)
    source = ListSource(many())
    p = make_poller(state, source, clock)
    assert await run_with_loop(p)
    source.emails = many(first=1)
    clock.now += 30
    assert await run_with_loop(p)
    assert state.arrivals == {("InboundEmail", "Billing"): 1}
    assert state.departures[("Queued", "InboundEmail", "Billing")] == 1


async def test_a_small_poll_ends_on_the_loop_without_a_thread_hop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[threading.Thread] = []
    monkeypatch.setattr(
        poller_module,
        "SnapshotBuilder",
        finishing(lambda: threads.append(threading.current_thread())),
    )
    clock = Clock(1_800_000_000.0)
    source = ListSource(many(count=10))
    p = make_poller(OrgState("acme"), source, clock)
    assert await run_with_loop(p)
    assert p.state.snapshot is not None
    groups = len(p.state.snapshot.counts)  # the previous poll's groups count too
    for extra in (0, 1):  # at the bound, then one past it
        source.emails = many(count=INLINE_SETTLE - groups + extra)
        clock.now += 30
        assert await run_with_loop(p)
    main = threading.main_thread()
    assert [t is main for t in threads] == [True, True, False]


async def test_a_large_page_is_aggregated_off_the_loop_and_a_small_one_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(poller_module, "SnapshotBuilder", BlockingAdd)
    big = [e(str(i)) for i in range(INLINE_PAGE_ITEMS + 1)]
    p = make_poller(OrgState("acme"), ListSource(big), Clock(1_800_000_000.0))
    assert await run_with_loop(p)
    assert p.state.snapshot is not None
    assert p.state.snapshot.unique_items == INLINE_PAGE_ITEMS + 1

    on_loop: list[bool] = []

    class RecordingAdd(SnapshotBuilder):
        def add(
            self, emails: Iterable[Email], details: Callable[[], Mapping[int, Email]] | None = None
        ) -> None:
            on_loop.append(threading.current_thread() is threading.main_thread())
            super().add(emails, details)

    monkeypatch.setattr(poller_module, "SnapshotBuilder", RecordingAdd)
    p._client = ListSource([e(str(i)) for i in range(INLINE_PAGE_ITEMS)])
    assert await run_with_loop(p)
    assert on_loop == [True]  # the common page size stays inline: no thread hop per page


async def test_a_page_from_a_large_body_is_aggregated_off_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A few emails, but from a body of many megabytes: their labels may be huge.
    monkeypatch.setattr(poller_module, "SnapshotBuilder", BlockingAdd)

    class LargeBody(ListSource):
        async def pages(self) -> AsyncGenerator[Page, None]:
            page = Page(0, len(self.emails), list(self.emails), len(self.emails))
            page.size = INLINE_PAGE_BYTES + 1
            yield page

    p = make_poller(OrgState("acme"), LargeBody([e("1"), e("2")]), Clock(1_800_000_000.0))
    assert await run_with_loop(p)
    assert p.state.snapshot is not None and p.state.snapshot.unique_items == 2


@pytest.mark.parametrize("emails", [[e("1")], many()], ids=["on the loop", "in the worker"])
async def test_a_crash_at_the_end_of_a_poll_is_reported_as_internal_and_polling_goes_on(
    monkeypatch: pytest.MonkeyPatch, emails: list[Email]
) -> None:
    class Crashing(SnapshotBuilder):
        def finish(
            self, now: float, reported_items: int | None = None, *, continuous: bool = True
        ) -> Snapshot:
            raise ZeroDivisionError("a bug")

    state = OrgState("acme")
    p = make_poller(state, ListSource(emails), Clock(1_800_000_000.0))
    monkeypatch.setattr(poller_module, "SnapshotBuilder", Crashing)
    assert not await p.poll_once()
    assert (state.up, state.last_error_reason, state.poll_errors["internal"]) == (
        False,
        "internal",
        1,
    )
    monkeypatch.setattr(poller_module, "SnapshotBuilder", SnapshotBuilder)
    assert await p.poll_once()
    assert state.up and state.polls == 2


def test_prepared_counters_are_new_objects_and_a_stale_commit_is_refused() -> None:
    state = OrgState("acme")
    first = SnapshotBuilder(AggregationOptions())
    first.add([e("1")])
    state.record_success(first.finish(1000.0), 0.1, None, None)
    arrivals, departures, pickups = state.arrivals, state.departures, state.pickups
    builder = SnapshotBuilder(AggregationOptions(), state.snapshot)
    builder.add([e("2")])
    snapshot = builder.finish(1030.0)
    counted = state.prepare_success(snapshot, snapshot.flow)
    # Nothing changed in place: a render thread may be reading these.
    assert arrivals == {("InboundEmail", "Billing"): 0} and state.arrivals is arrivals
    assert counted.arrivals is not arrivals and counted.departures is not departures
    assert counted.pickups is not pickups
    # Another result committed in between: this one would lose its counts, so it is refused.
    other = SnapshotBuilder(AggregationOptions(), state.snapshot)
    other.add([e("1")])
    state.record_success(other.finish(1020.0), 0.1, None, None)
    version = state.version
    assert not state.commit_success(counted, 0.1, None)
    assert state.version == version and state.snapshot is not snapshot


def test_finish_leaves_the_previous_snapshots_fold_memory_alone() -> None:
    options = AggregationOptions(max_work_types=1)
    first = SnapshotBuilder(options)
    first.add([e("1", wt="A")])
    previous = first.finish(1000.0)
    remembered = len(previous.fold_memory)
    builder = SnapshotBuilder(options, previous)
    builder.add([e("1", wt="A"), e("2", wt="B")])  # B folds into `other`
    snapshot = builder.finish(1030.0)
    assert snapshot.overflow == {"work_type": 1}
    assert len(previous.fold_memory) == remembered  # an abandoned poll marks nothing counted
    assert len(snapshot.fold_memory) == remembered + 1
    again = SnapshotBuilder(options, snapshot)
    again.add([e("1", wt="A"), e("2", wt="B")])
    assert again.finish(1060.0).overflow == {}  # counted once, as before
