"""The handling KPIs' memory (exporter.aggregation.handling): bounded, compact, never changed
once a snapshot holds it, and dated by polls."""

from __future__ import annotations

from exporter.aggregation.builder import AggregationOptions, SnapshotBuilder, aggregate
from exporter.aggregation.handling import HandlingOptions, thread_hash
from exporter.domain.models import Email, Snapshot

T0 = 1_800_000_000.0


def email(n: int, thread: str, state: str = "Queued", **extra: str) -> Email:
    return Email(
        id=n,
        state=state,
        email_type="InboundEmail",
        work_type_name="W",
        thread_id=thread,
        queued_time="2027-01-15T07:00:00Z",
        **extra,
    )


def polls(lists: list[list[Email]], step: float = 30.0, **handling: object) -> list[Snapshot]:
    options = AggregationOptions(handling=HandlingOptions(**handling))  # type: ignore[arg-type]
    out: list[Snapshot] = []
    for i, emails in enumerate(lists):
        previous = out[-1] if out else None
        out.append(aggregate(emails, now=T0 + i * step, options=options, previous=previous))
    return out


def repeats(snap: Snapshot) -> int:
    return sum((snap.handling.repeats or {}).values())


def test_the_oldest_threads_are_forgotten_first() -> None:
    # Three emails leave one poll after another; only the two latest threads are kept.
    snaps = polls(
        [
            [email(1, "a"), email(2, "b"), email(3, "c")],
            [email(2, "b"), email(3, "c")],
            [email(3, "c")],
            [],
            [email(11, "a"), email(12, "b"), email(13, "c")],
        ],
        max_threads=2,
    )
    memory = snaps[3].handling.memory
    assert memory is not None
    assert list(memory.threads) == [thread_hash("b"), thread_hash("c")]
    assert repeats(snaps[4]) == 2  # b and c; a was forgotten


def test_threads_are_forgotten_after_thread_memory() -> None:
    snaps = polls(
        [[email(1, "a")], [], [], [], [email(2, "a")]],
        step=100.0,
        thread_memory=250.0,
    )
    assert repeats(snaps[4]) == 0  # left at T0+100, seen again 300 s later
    snaps = polls([[email(1, "a")], [], [], [email(2, "a")]], step=100.0, thread_memory=250.0)
    assert repeats(snaps[3]) == 1


def test_a_thread_left_and_back_within_one_poll_interval_is_not_a_repeat() -> None:
    # Which came first cannot be told: the departure must be seen by an earlier poll.
    snaps = polls([[email(0, "x")], [email(1, "a")], [email(2, "a")], [email(3, "a")]])
    assert [repeats(s) for s in snaps] == [0, 0, 0, 1]


def test_threads_of_emails_present_at_the_first_poll_are_remembered() -> None:
    snaps = polls([[email(1, "a")], [], [email(2, "a")]])
    assert repeats(snaps[2]) == 1


def test_emails_without_a_thread_are_never_repeats() -> None:
    snaps = polls([[email(1, "")], [], [email(2, "")]])
    assert repeats(snaps[2]) == 0 and thread_hash(None) == thread_hash("") == 0


def test_a_poll_never_changes_the_memory_of_the_snapshot_it_started_from() -> None:
    _, second = polls([[email(1, "a"), email(2, "b")], [email(2, "b", "Active")]])
    memory = second.handling.memory
    assert memory is not None
    before = (
        dict(memory.slots),
        bytes(memory.observed),
        memory.since.tobytes(),
        dict(memory.threads),
    )
    builder = SnapshotBuilder(AggregationOptions(), second)
    builder.add([email(3, "c", "Active")])  # email 2 left, 3 arrived: slots are reused
    third = builder.finish(T0 + 60)
    after = (
        dict(memory.slots),
        bytes(memory.observed),
        memory.since.tobytes(),
        dict(memory.threads),
    )
    assert before == after
    assert third.handling.memory is not None and third.handling.memory.slots.keys() == {3}


def test_the_memory_shrinks_with_the_queue() -> None:
    big = [email(n, f"t{n}") for n in range(10_000)]
    snaps = polls([big, big[:10], big[:10]])
    memory = snaps[-1].handling.memory
    assert memory is not None
    assert len(memory.slots) == 10 and len(memory.since) == 10 and not memory.free
    # The departed threads are still remembered (8-byte hashes), within max_threads.
    assert len(memory.threads) == 9_990


def test_nothing_is_remembered_when_no_kpi_needs_it() -> None:
    snaps = polls(
        [[email(1, "a")], [email(1, "a", "Active")], []],
        handle=False,
        resolution=False,
        dwell=False,
        repeat_contacts=False,
    )
    assert all(s.handling.memory is None for s in snaps)
    assert snaps[-1].handling.handle is None and snaps[-1].handling.dwell is None


def test_first_poll_without_repeat_contacts_tracks_nobody() -> None:
    snaps = polls([[email(n, "t") for n in range(100)]], repeat_contacts=False)
    memory = snaps[0].handling.memory
    assert memory is not None and not memory.slots


def test_handling_start_is_active_time_not_earlier_than_queued_else_the_poll() -> None:
    # T0 is 2027-01-15 08:00 UTC; both emails were queued at 07:00.
    exact = email(2, "b", "Active", active_time="2027-01-15T07:05:00Z")
    early = email(3, "c", "Active", active_time="2027-01-15T06:00:00Z")  # before its queue time
    snaps = polls([[email(1, "a")], [exact, early], []])
    handle = sorted(seconds for _, seconds in snaps[2].handling.handle or ())
    # Both left at T0+60: one handled since 07:05, the other since the poll that saw it.
    assert handle == [30.0, 3300.0 + 60.0]


def test_kpis_enabled_midway_observe_only_emails_that_arrive_after() -> None:
    off = AggregationOptions(handling=HandlingOptions(handle=False, dwell=False,
                             resolution=False, repeat_contacts=False))  # fmt: skip
    on = AggregationOptions()
    first = aggregate([email(1, "a")], now=T0, options=off)
    second = aggregate([email(1, "a", "Active"), email(2, "b")], now=T0 + 30, options=on,
                       previous=first)  # fmt: skip
    third = aggregate([email(2, "b", "Active")], now=T0 + 60, options=on, previous=second)
    # Email 1 was there before the KPIs were measured: its stay and departure are not observed;
    # email 2 arrived after: its Queued stay is.
    assert third.handling.dwell == (("Queued", 30.0),)
    assert third.handling.handle == ()


def test_thread_keys_are_exact_for_numbers_and_hashed_otherwise() -> None:
    assert thread_hash("247958000") == 247958001 == thread_hash(247958000)
    assert thread_hash("0") == 1 and thread_hash("007") not in (0, 8)  # "007" is not "7"
    assert thread_hash("t-1") != thread_hash("t-2") and thread_hash("t-1") != 0
    assert thread_hash("9" * 30) != 0  # too long for an int64: hashed
