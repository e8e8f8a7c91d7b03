"""Pure aggregation: counts, oldest timestamps, waiting ages, fallbacks, caps and the flow diff."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.aggregation.builder import (
    AggregationOptions,
    SnapshotBuilder,
    aggregate,
    diff,
)
from exporter.aggregation.dating import parse_timestamp
from exporter.domain.models import Email
from exporter.domain.names import STATES

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
OPTIONS = AggregationOptions()


def email(id: str, state: str = "Queued", **fields: object) -> Email:
    fields.setdefault("email_type", "InboundEmail")
    fields.setdefault("work_type_name", "Billing")
    return Email(id=id, state=state, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-26T11:00:00Z", NOW - 3600),
        ("2026-11-26T11:00:00.000Z", NOW - 3600),
        ("2026-11-26T11:00:00.250Z", NOW - 3599.75),
        ("2026-11-26T11:00:00+00:00", NOW - 3600),
        ("2026-11-26T12:00:00+01:00", NOW - 3600),
        ("2026-11-26T06:30:00-04:30", NOW - 3600),
        ("2026-11-26T11:00:00.123456789Z", NOW - 3600 + 0.123456),
        ("2026-11-26T11:00:00", NOW - 3600),
        ("2026-11-26T11:00:00+0000", NOW - 3600),
        ("2026-11-26t11:00:00.000z", NOW - 3600),
        (" 2026-11-26T11:00:00Z ", NOW - 3600),
        ("2026-11-26 11:00:00Z", NOW - 3600),
    ],
)
def test_timestamps_in_every_iso_form(raw: str, expected: float) -> None:
    assert parse_timestamp(raw) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("raw", [None, "", "yesterday", "2026-13-01T00:00:00Z", "12:00"])
def test_unparseable_timestamps_are_none(raw: str | None) -> None:
    assert parse_timestamp(raw) is None


def test_counts_and_oldest_per_group() -> None:
    snap = aggregate(
        [
            email("1", queued_time="2026-11-26T11:00:00Z"),
            email("2", queued_time="2026-11-26T11:30:00Z"),
            email("3", "Active", queued_time="2026-11-26T10:00:00Z"),
            email("4", email_type="ManualOutboundEmail", queued_time="2026-11-26T11:59:00Z"),
        ],
        now=NOW,
        options=OPTIONS,
    )
    assert snap.counts[("Queued", "InboundEmail", "Billing")] == 2
    assert snap.counts[("Active", "InboundEmail", "Billing")] == 1
    assert snap.counts[("Queued", "ManualOutboundEmail", "Billing")] == 1
    assert snap.oldest[("Queued", "InboundEmail", "Billing")] == NOW - 3600
    assert snap.oldest[("Active", "InboundEmail", "Billing")] == NOW - 7200
    assert snap.unique_items == 4


def test_age_origin_falls_back_from_queued_to_received_to_start() -> None:
    snap = aggregate(
        [
            email("1", queued_time="garbage", received_time="2026-11-26T11:00:00Z"),
            email("2", "Active", start_time="2026-11-26T10:00:00Z"),
            email("3", "Wrap"),
        ],
        now=NOW,
        options=OPTIONS,
    )
    assert snap.oldest[("Queued", "InboundEmail", "Billing")] == NOW - 3600
    assert snap.oldest[("Active", "InboundEmail", "Billing")] == NOW - 7200
    assert ("Wrap", "InboundEmail", "Billing") not in snap.oldest
    assert snap.counts[("Wrap", "InboundEmail", "Billing")] == 1
    assert snap.undated == 1


def test_label_fallbacks_and_undocumented_values_pass_through() -> None:
    snap = aggregate(
        [
            Email(id="1"),
            Email(id="2", state="Parked", email_type="Fax", work_type_id="111"),
            Email(id=3, state="Queued", work_type_id=7, work_type_name=""),
        ],
        now=NOW,
        options=OPTIONS,
    )
    assert snap.counts[("unknown", "unknown", "unknown")] == 1
    assert snap.counts[("Parked", "Fax", "111")] == 1
    assert snap.counts[("Queued", "unknown", "7")] == 1


def test_documented_states_are_zero_filled_for_seen_groups() -> None:
    snap = aggregate([email("1")], now=NOW, options=OPTIONS)
    group = {k: v for k, v in snap.counts.items() if k[1:] == ("InboundEmail", "Billing")}
    assert set(k[0] for k in group) == set(STATES)
    assert sum(group.values()) == 1


def test_emptied_group_reports_zero_until_series_ttl() -> None:
    options = AggregationOptions(series_ttl=600)
    first = aggregate([email("1")], now=NOW, options=options)
    later = aggregate([], now=NOW + 600, options=options, previous=first)
    assert later.counts[("Queued", "InboundEmail", "Billing")] == 0
    assert later.waiting[("InboundEmail", "Billing")].bucket_counts(NOW, (60.0,)) == [0]
    gone = aggregate([], now=NOW + 601, options=options, previous=first)
    assert gone.counts == {}
    assert gone.waiting == {}


def test_duplicates_counted_once_and_reported() -> None:
    builder = SnapshotBuilder(OPTIONS)
    builder.add([email("1"), email("2")])
    builder.add([email("2", "Active"), email("3")])
    snap = builder.finish(NOW)
    assert snap.duplicates == 1
    assert snap.unique_items == 3
    assert snap.counts[("Queued", "InboundEmail", "Billing")] == 3


def test_missing_ids_are_invalid_not_counted() -> None:
    builder = SnapshotBuilder(OPTIONS)
    builder.add([Email(state="Queued"), Email(id="", state="Queued"), email("1")])
    builder.add_invalid("not_object", 2)
    snap = builder.finish(NOW)
    assert snap.invalid == {"missing_id": 2, "not_object": 2}
    assert snap.unique_items == 1


def test_work_types_beyond_the_cap_fold_into_other() -> None:
    options = AggregationOptions(max_work_types=2)
    emails = [email(str(i), work_type_name=f"wt{i % 4}") for i in range(8)]
    snap = aggregate(emails, now=NOW, options=options)
    work_types: Counter[str] = Counter()
    for (_, _, wt), n in snap.counts.items():
        work_types[wt] += n
    assert work_types == {"wt0": 2, "wt1": 2, "other": 4}
    assert snap.overflow == {"work_type": 2}  # wt2 and wt3, each counted once


def test_admitted_work_types_keep_their_place_across_polls() -> None:
    options = AggregationOptions(max_work_types=1)
    first = aggregate([email("1", work_type_name="A")], now=NOW, options=options)
    second = aggregate(
        [email("2", work_type_name="B"), email("3", work_type_name="A")],
        now=NOW + 30,
        options=options,
        previous=first,
    )
    assert second.counts[("Queued", "InboundEmail", "A")] == 1
    assert second.counts[("Queued", "InboundEmail", "other")] == 1


def test_waiting_histogram_only_counts_waiting_states_and_grows_with_time() -> None:
    snap = aggregate(
        [
            email("1", queued_time="2026-11-26T11:59:30Z"),  # 30 s
            email("2", "Queued2", queued_time="2026-11-26T11:50:00Z"),  # 600 s
            email("3", "Transferred", queued_time="2026-11-26T10:00:00Z"),  # 7200 s
            email("4", "Active", queued_time="2026-11-26T11:59:59Z"),
            email("5", "Reassigned"),  # no timestamp: counted, no age
        ],
        now=NOW,
        options=OPTIONS,
    )
    ages = snap.waiting[("InboundEmail", "Billing")]
    bounds = (60.0, 900.0, 3600.0)
    assert ages.bucket_counts(NOW, bounds) == [1, 2, 2]
    assert len(ages.timestamps) == 3
    assert ages.age_sum(NOW) == pytest.approx(30 + 600 + 7200)
    assert ages.bucket_counts(NOW + 60, bounds) == [0, 2, 2]
    assert ages.age_sum(NOW + 60) == pytest.approx(30 + 600 + 7200 + 180)


def test_future_timestamps_count_as_age_zero() -> None:
    snap = aggregate([email("1", queued_time="2026-11-26T12:05:00Z")], now=NOW, options=OPTIONS)
    ages = snap.waiting[("InboundEmail", "Billing")]
    assert ages.bucket_counts(NOW, (60.0,)) == [1]
    assert ages.age_sum(NOW) == 0


def test_agent_workload_only_when_enabled_with_its_own_cap() -> None:
    emails = [
        email("1", "Active", work_handler_name="doe, jane", work_handler_id="a1"),
        email("2", "Wrap", work_handler_id="b2"),
        email("3", "Active", work_handler_name="roe, rick"),
        email("4"),
    ]
    assert aggregate(emails, now=NOW, options=OPTIONS).agents == {}
    snap = aggregate(emails, now=NOW, options=AggregationOptions(agent_metrics=True, max_agents=2))
    assert snap.agents == {("doe, jane", "Active"): 1, ("b2", "Wrap"): 1, ("other", "Active"): 1}
    assert snap.overflow == {"agent": 1}


def test_flow_diff_arrivals_departures_transitions() -> None:
    before = aggregate([email("1"), email("2"), email("3", "Active")], now=NOW, options=OPTIONS)
    after = aggregate(
        [email("2", "Active"), email("3", "Active"), email("4", work_type_name="Sales")],
        now=NOW + 30,
        options=OPTIONS,
        previous=before,
    )
    flow = diff(before, after)
    assert flow.arrivals == {("InboundEmail", "Sales"): 1}
    assert flow.departures == {("Queued", "InboundEmail", "Billing"): 1}
    assert flow.transitions == {("Queued", "Active"): 1}


# --- properties ---------------------------------------------------------------------------------

STATE_VALUES = st.sampled_from([*STATES[:5], "Parked", None])
STAMPS = st.one_of(
    st.none(),
    st.just("not a time"),
    st.integers(min_value=0, max_value=200_000).map(
        lambda s: datetime.fromtimestamp(NOW - s + 100, UTC).isoformat().replace("+00:00", "Z")
    ),
)
EMAILS = st.lists(
    st.builds(
        Email,
        id=st.integers(min_value=0, max_value=60).map(str),
        state=STATE_VALUES,
        email_type=st.sampled_from(["InboundEmail", "CampaignOutboundEmail", None]),
        work_type_name=st.sampled_from(["A", "B", "C", None]),
        work_type_id=st.sampled_from(["1", None]),
        queued_time=STAMPS,
        received_time=STAMPS,
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(EMAILS)
def test_counts_sum_to_unique_emails(emails: list[Email]) -> None:
    snap = aggregate(emails, now=NOW, options=OPTIONS)
    unique = {e.id for e in emails}
    assert sum(snap.counts.values()) == len(unique) == snap.unique_items
    assert snap.duplicates == len(emails) - len(unique)


@settings(max_examples=150, deadline=None)
@given(EMAILS)
def test_oldest_is_the_minimum_of_the_group(emails: list[Email]) -> None:
    snap = aggregate(emails, now=NOW, options=OPTIONS)
    firsts: dict[str, Email] = {}
    for e in emails:
        firsts.setdefault(str(e.id), e)
    expected: dict[tuple[str, str, str], float] = {}
    for e in firsts.values():
        ts = next(
            (t for t in map(parse_timestamp, (e.queued_time, e.received_time)) if t is not None),
            None,
        )
        if ts is None:
            continue
        key = (
            e.state or "unknown",
            e.email_type or "unknown",
            str(e.work_type_name or e.work_type_id or "unknown"),
        )
        expected[key] = min(ts, expected.get(key, ts))
    assert snap.oldest == expected


@settings(max_examples=150, deadline=None)
@given(EMAILS, st.floats(min_value=0, max_value=100_000))
def test_histogram_buckets_are_cumulative_and_end_at_the_count(
    emails: list[Email], later: float
) -> None:
    snap = aggregate(emails, now=NOW, options=OPTIONS)
    bounds = (60.0, 300.0, 3600.0, 86400.0)
    for ages in snap.waiting.values():
        counts = ages.bucket_counts(NOW + later, bounds)
        assert counts == sorted(counts)
        assert counts[-1] <= len(ages.timestamps)
        assert ages.age_sum(NOW + later) >= 0
    total_waiting = sum(len(a.timestamps) for a in snap.waiting.values())
    dated_waiting = sum(
        1
        for e in {str(e.id): e for e in reversed(emails)}.values()
        if (e.state or "unknown") in OPTIONS.waiting_states
        and (parse_timestamp(e.queued_time) or parse_timestamp(e.received_time)) is not None
    )
    assert total_waiting == dated_waiting


@settings(max_examples=100, deadline=None)
@given(st.lists(EMAILS, min_size=2, max_size=5))
def test_flow_conserves_population(polls: list[list[Email]]) -> None:
    snapshots = []
    previous = None
    for i, emails in enumerate(polls):
        previous = aggregate(emails, now=NOW + 30 * i, options=OPTIONS, previous=previous)
        snapshots.append(previous)
    for before, after in itertools.pairwise(snapshots):
        flow = diff(before, after)
        assert after.flow is not None
        assert +after.flow.arrivals == +flow.arrivals
        assert +after.flow.departures == +flow.departures
        assert +after.flow.transitions == +flow.transitions
        change = after.unique_items - before.unique_items
        assert sum(flow.arrivals.values()) - sum(flow.departures.values()) == change


def test_numeric_ids_are_matched_by_value_without_merging_distinct_ids() -> None:
    snap = aggregate(
        [email("7"), Email(id=7, state="Queued"), email("007"), email("\u0667"), email("0")],
        now=NOW,
        options=OPTIONS,
    )
    # "7" and 7 are one email; "007", Arabic-Indic seven and "0" are others
    assert snap.unique_items == 4
    assert snap.duplicates == 1
    later = aggregate(
        [email("7", "Active"), email("007")], now=NOW + 30, options=OPTIONS, previous=snap
    )
    flow = diff(snap, later)
    assert flow.transitions == {("Queued", "Active"): 1}
    assert sum(flow.departures.values()) == 2


def test_a_freed_work_type_slot_goes_to_the_folded_value_once_the_old_one_expires() -> None:
    options = AggregationOptions(max_work_types=2, series_ttl=60)
    abc = [
        email("1", work_type_name="A"),
        email("2", work_type_name="B"),
        email("3", work_type_name="C"),
    ]
    first = aggregate(abc, now=NOW, options=options)
    assert first.counts[("Queued", "InboundEmail", "other")] == 1
    bc = abc[1:]
    second = aggregate(bc, now=NOW + 30, options=options, previous=first)
    assert second.counts[("Queued", "InboundEmail", "other")] == 1  # A still holds its slot
    third = aggregate(bc, now=NOW + 100, options=options, previous=second)
    fourth = aggregate(bc, now=NOW + 130, options=options, previous=third)
    assert fourth.counts[("Queued", "InboundEmail", "C")] == 1
    assert fourth.counts.get(("Queued", "InboundEmail", "other"), 0) == 0


def test_undocumented_states_and_email_types_are_capped() -> None:
    junk = [email(str(i), state=f"S{i}", email_type=f"T{i}") for i in range(100)]
    snap = aggregate([email("x", "Active"), *junk], now=NOW, options=OPTIONS)
    states = {k[0] for k, n in snap.counts.items() if n}
    types = {k[1] for k, n in snap.counts.items() if n}
    assert len(states - {"Active", "other"}) == 20 and "other" in states
    assert len(types - {"InboundEmail", "other"}) == 20
    assert snap.overflow == {"state": 80, "email_type": 80}
    assert sum(snap.counts.values()) == 101


def test_documented_values_are_never_folded_even_after_junk() -> None:
    junk = [email(str(i), state=f"S{i}") for i in range(30)]
    snap = aggregate([*junk, email("q", "Queued2")], now=NOW, options=OPTIONS)
    assert snap.counts[("Queued2", "InboundEmail", "Billing")] == 1


def test_agents_above_the_cap_keep_their_series_across_polls() -> None:
    options = AggregationOptions(agent_metrics=True, max_agents=1)
    first = aggregate([email("1", "Active", work_handler_id="a")], now=NOW, options=options)
    second = aggregate(
        [email("2", "Active", work_handler_id="b"), email("1", "Active", work_handler_id="a")],
        now=NOW + 30,
        options=options,
        previous=first,
    )
    assert second.agents == {("a", "Active"): 1, ("other", "Active"): 1}


def test_zero_fill_follows_a_server_side_states_filter() -> None:
    options = AggregationOptions(zero_fill_states=("Queued", "Queued2"))
    snap = aggregate([email("1")], now=NOW, options=options)
    assert {k[0] for k in snap.counts} == {"Queued", "Queued2"}
