"""Service levels: target rules, breach instants, pickup detection rules, store and exposition."""

from __future__ import annotations

import dataclasses
from array import array
from datetime import UTC, datetime

from prometheus_client import generate_latest

from exporter.aggregation.builder import AggregationOptions, aggregate
from exporter.domain.models import Email, ServiceLevelGroup, Snapshot
from exporter.metrics.families import Registry
from exporter.metrics.queue import QueueCollector
from exporter.metrics.textformat import render
from exporter.polling.store import Store
from exporter.servicelevels.calendar import BusinessCalendar
from exporter.servicelevels.policy import (
    ServiceLevel,
    ServiceLevelPolicy,
    ServiceLevelRule,
    breach_times,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()  # a Thursday
BILLING = ("InboundEmail", "Billing")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def email(id: str, state: str, queued: float | None = T0 - 600, **fields: object) -> Email:
    fields.setdefault("email_type", "InboundEmail")
    fields.setdefault("work_type_name", "Billing")
    if queued is not None:
        fields["queued_time"] = iso(queued)
    return Email(id=id, state=state, **fields)  # type: ignore[arg-type]


def options(target: float = 900.0, clock: object = None) -> AggregationOptions:
    level = ServiceLevel(target, 300.0) if clock is None else ServiceLevel(target, 300.0, clock)  # type: ignore[arg-type]
    return AggregationOptions(service_levels=ServiceLevelPolicy(level), wait_buckets=(60.0, 900.0))


def polls(
    *lists: list[Email], opts: AggregationOptions | None = None, step: float = 30.0
) -> Snapshot:
    """Aggregate consecutive polls `step` seconds apart; the last snapshot."""
    opts = opts or options()
    snap = None
    for i, emails in enumerate(lists):
        snap = aggregate(emails, now=T0 + i * step, options=opts, previous=snap)
    assert snap is not None
    return snap


# -- target rules ------------------------------------------------------------------------------


def test_the_first_full_match_wins_else_the_default() -> None:
    fast, vip, default = ServiceLevel(600, 60), ServiceLevel(300, 60), ServiceLevel(86400, 3600)
    policy = ServiceLevelPolicy(
        default,
        (
            ServiceLevelRule(vip, work_type="VIP.*", email_type="Inbound"),
            ServiceLevelRule(fast, work_type="Sales|VIP.*"),
        ),
    )
    assert policy.level(("Inbound", "VIP Gold")) is vip
    assert policy.level(("InboundEmail", "VIP Gold")) is fast  # "Inbound" must match fully
    assert policy.level(("InboundEmail", "Sales")) is fast
    assert policy.level(("InboundEmail", "Sales EMEA")) is default  # full match, not search
    assert policy.level(("InboundEmail", "other")) is default


# -- breach instants and scrape-time values ----------------------------------------------------


def test_breached_at_risk_and_next_breach_by_bisection() -> None:
    group = ServiceLevelGroup(600.0, 120.0, array("d", [100.0, 200.0, 200.0, 300.0, 1000.0]))
    assert (group.breached(99.0), group.at_risk(99.0), group.next_breach(99.0)) == (0, 3, 100.0)
    assert (group.breached(200.0), group.at_risk(200.0), group.next_breach(200.0)) == (3, 1, 300.0)
    assert (group.breached(1000.0), group.at_risk(1000.0), group.next_breach(1000.0)) == (
        5,
        0,
        None,
    )
    never = ServiceLevelGroup(600.0, 120.0, array("d", [float("inf")]))
    assert (never.breached(T0), never.at_risk(T0), never.next_breach(T0)) == (0, 0, None)


def test_breach_times_on_a_business_clock() -> None:
    office = BusinessCalendar("UTC", tuple(((480, 1080),) if d < 5 else () for d in range(7)))
    level = ServiceLevel(3600.0, 600.0, office)
    thursday_1730 = T0 + 5.5 * 3600
    stamps = array("d", [T0, thursday_1730, thursday_1730])  # sorted, as the snapshot keeps them
    # 30 open minutes left on Thursday, the other 30 on Friday from 08:00.
    friday_0830 = T0 + 20.5 * 3600
    assert list(breach_times(stamps, level, T0)) == [T0 + 3600, friday_0830, friday_0830]
    continuous = ServiceLevel(3600.0, 600.0)
    assert list(breach_times(array("d", [T0]), continuous, T0)) == [T0 + 3600]


def test_service_level_gauges_per_group_in_the_snapshot() -> None:
    snap = polls(
        [email("1", "Queued", T0 - 1000), email("2", "Queued", T0 - 700), email("3", "Active")]
    )
    group = snap.service[BILLING]
    assert group.target == 900.0
    assert (group.breached(T0), group.at_risk(T0), group.next_breach(T0)) == (1, 1, T0 + 200)


# -- pickup rules ------------------------------------------------------------------------------


def test_a_pickup_seen_waiting_then_active_is_exact_with_active_time() -> None:
    snap = polls(
        [email("1", "Queued")],
        [email("1", "Active", active_time=iso(T0 + 10))],
    )
    (pickup,) = snap.pickups
    assert (pickup.pair, pickup.wait, pickup.met, pickup.exact) == (BILLING, 610.0, True, True)
    assert pickup.bucket == 1  # 60 < 610 <= 900


def test_without_active_time_the_poll_that_sees_it_times_the_pickup() -> None:
    snap = polls([email("1", "Queued")], [email("1", "Wrap")], step=400.0)
    (pickup,) = snap.pickups
    assert (pickup.wait, pickup.met, pickup.exact) == (1000.0, False, False)


def test_the_first_poll_is_a_baseline() -> None:
    snap = polls([email("1", "Active", active_time=iso(T0 - 60)), email("2", "Queued")])
    assert snap.pickups == ()
    assert snap.picked == set() and snap.memberships[2][0] == "Queued"


def test_leaving_straight_from_waiting_is_not_a_pickup() -> None:
    snap = polls([email("1", "Queued"), email("2", "Queued")], [email("2", "Queued")])
    assert snap.pickups == ()
    assert snap.flow is not None and sum(snap.flow.departures.values()) == 1


def test_first_seen_active_counts_only_with_active_time_after_queued_time() -> None:
    snap = polls(
        [],
        [
            email("1", "Active", active_time=iso(T0 + 5)),
            email("2", "Active", active_time=iso(T0 - 600)),  # created active: never waited
            email("3", "Active"),
            email("4", "Draft", queued=None, active_time=iso(T0)),
        ],
    )
    assert [(p.wait, p.exact) for p in snap.pickups] == [(605.0, True)]


def test_invalid_is_not_a_pickup_but_the_email_is_still_watched() -> None:
    snap = polls(
        [email("1", "Queued")],
        [email("1", "Invalid")],
        [email("1", "Active", active_time=iso(T0 + 45))],
    )
    invalid = polls([email("1", "Queued")], [email("1", "Invalid")])
    assert invalid.pickups == () and invalid.watched == {1}
    (pickup,) = snap.pickups
    assert pickup.wait == 645.0


def test_each_email_counts_once_and_memory_is_pruned() -> None:
    first = [email("1", "Queued"), email("2", "Queued")]
    second = [email("1", "Active", active_time=iso(T0 + 1)), email("2", "Queued")]
    third = [email("1", "Transferred"), email("2", "Queued")]
    fourth = [email("1", "TransferredActive", active_time=iso(T0 + 95))]
    snaps = []
    snap = None
    for i, emails in enumerate((first, second, third, fourth)):
        snap = aggregate(emails, now=T0 + 30 * i, options=options(), previous=snap)
        snaps.append(snap)
    assert [len(s.pickups) for s in snaps] == [0, 1, 0, 0]
    assert snaps[-1].picked == {1} and snaps[-1].watched == set()  # 2 left: forgotten


def test_met_and_missed_on_the_group_clock() -> None:
    office = BusinessCalendar("UTC", tuple(((480, 1080),) if d < 5 else () for d in range(7)))
    opts = options(target=3600.0, clock=office)
    evening = T0 + 5.5 * 3600  # Thursday 17:30, half an hour before closing
    picked = evening + 14 * 3600 + 59 * 60  # Friday 08:29: 59 open minutes later
    snap = polls(
        [email("1", "Queued", evening), email("2", "Queued", evening)],
        [
            email("1", "Active", evening, active_time=iso(picked)),
            email("2", "Active", evening, active_time=iso(picked + 120)),
        ],
        opts=opts,
        step=86400.0,
    )
    assert [(p.met, p.wait) for p in snap.pickups] == [(True, 53940.0), (False, 54060.0)]


# -- store: counters, stale gap -----------------------------------------------------------------


def test_after_a_stale_gap_only_pickups_timed_by_active_time_count() -> None:
    store = Store(["acme"])
    state = store.orgs["acme"]
    first = aggregate([email("1", "Queued"), email("2", "Queued")], now=T0, options=options())
    state.record_success(first, 0.1, None, None)
    second = aggregate(
        [email("1", "Active", active_time=iso(T0 + 5)), email("2", "Active")],
        now=T0 + 3600,
        options=options(),
        previous=first,
    )
    assert len(second.pickups) == 2
    state.record_success(second, 0.1, None, None)  # flow None: the poller saw a stale gap
    assert state.pickups[(*BILLING, "met")] == 1 and state.pickups[(*BILLING, "missed")] == 0
    assert state.pickup_waits[BILLING].count == 1


def test_exposition_of_the_six_families() -> None:
    store = Store(["acme"])
    state = store.orgs["acme"]
    first = aggregate(
        [email("1", "Queued", T0 - 1000), email("2", "Queued")], now=T0, options=options()
    )
    state.record_success(first, 0.1, None, None)
    second = aggregate(
        [email("1", "Queued", T0 - 1000), email("2", "Active", active_time=iso(T0 + 5))],
        now=T0 + 30,
        options=options(),
        previous=first,
    )
    state.record_success(second, 0.1, second.flow, None)
    registry = Registry()
    collector = QueueCollector(
        store, age_buckets=(60.0, 900.0), stale_after=300, poll_interval=30, clock=lambda: T0 + 40
    )
    registry.register(collector)
    text = render(registry).decode()  # the /metrics path
    assert text.encode() == generate_latest(registry)  # ...and prometheus_client's, byte for byte
    labels = 'email_type="InboundEmail",org="acme",work_type="Billing"'
    met = 'email_type="InboundEmail",org="acme",service_level="met",work_type="Billing"'

    def le(bound: str) -> str:
        return f'email_type="InboundEmail",le="{bound}",org="acme",work_type="Billing"'

    for line in (
        "# TYPE alvaria_emailqueue_service_level_target_seconds gauge",
        f"alvaria_emailqueue_service_level_target_seconds{{{labels}}} 900.0",
        f"alvaria_emailqueue_service_level_breached_emails{{{labels}}} 1.0",
        f"alvaria_emailqueue_service_level_at_risk_emails{{{labels}}} 0.0",
        "# TYPE alvaria_emailqueue_pickups_total counter",
        f"alvaria_emailqueue_pickups_total{{{met}}} 1.0",
        f"alvaria_emailqueue_pickups_total{{{met.replace('met', 'missed')}}} 0.0",
        "# TYPE alvaria_emailqueue_pickup_wait_seconds histogram",
        f"alvaria_emailqueue_pickup_wait_seconds_bucket{{{le('60.0')}}} 0.0",
        f"alvaria_emailqueue_pickup_wait_seconds_bucket{{{le('900.0')}}} 1.0",
        f"alvaria_emailqueue_pickup_wait_seconds_bucket{{{le('+Inf')}}} 1.0",
        f"alvaria_emailqueue_pickup_wait_seconds_count{{{labels}}} 1.0",
        f"alvaria_emailqueue_pickup_wait_seconds_sum{{{labels}}} 605.0",
    ):
        assert line in text, line
    # The only waiting email has breached: no next breach to show.
    assert "alvaria_emailqueue_service_level_next_breach_timestamp_seconds{" not in text


def test_a_pickup_without_any_timestamp_is_not_counted() -> None:
    snap = polls([email("1", "Queued", None)], [email("1", "Active", None)])
    assert snap.pickups == () and snap.picked == {1}


def test_timestamps_the_page_decoder_parsed_already_are_read_directly() -> None:
    queued = datetime.fromtimestamp(T0 - 600, UTC)  # as decode.WireEmail hands them over
    first = Email(id=1, state="Queued", email_type="InboundEmail", work_type_name="Billing", queued_time=queued)  # type: ignore[arg-type]  # fmt: skip
    second = Email(id=1, state="Active", email_type="InboundEmail", work_type_name="Billing", queued_time=queued, active_time=iso(T0 + 10))  # type: ignore[arg-type]  # fmt: skip
    (pickup,) = polls([first], [second]).pickups
    assert (pickup.wait, pickup.exact) == (610.0, True)


def test_pickup_waits_restart_when_the_buckets_change() -> None:
    store = Store(["acme"])
    state = store.orgs["acme"]
    first = aggregate([email("1", "Queued"), email("2", "Queued")], now=T0, options=options())
    state.record_success(first, 0.1, None, None)
    picked = [email("1", "Active", active_time=iso(T0 + 5)), email("2", "Queued")]
    second = aggregate(picked, now=T0 + 30, options=options(), previous=first)
    state.record_success(second, 0.1, second.flow, None)
    assert state.pickup_waits[BILLING].count == 1
    assert list(state.pickup_bounds) == [60.0, 900.0]
    # A reload changed age_buckets: the counts by old bucket index mean nothing any more.
    wider = dataclasses.replace(options(), wait_buckets=(60.0, 300.0, 900.0))
    again = [email("1", "Active", active_time=iso(T0 + 5)), email("2", "Active", active_time=iso(T0 + 40))]  # fmt: skip
    third = aggregate(again, now=T0 + 60, options=wider, previous=second)
    state.record_success(third, 0.1, third.flow, None)
    assert list(state.pickup_bounds) == [60.0, 300.0, 900.0]
    assert state.pickup_waits[BILLING].count == 1  # only the pickup counted in the new bounds
    assert state.pickups[(*BILLING, "met")] == 2  # the counter itself carries on
