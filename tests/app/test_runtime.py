"""The interpreter settings the daemon serves with (exporter.app.runtime)."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from exporter.app import runtime
from exporter.domain.models import Snapshot


@pytest.fixture
def restored() -> Iterator[None]:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    yield
    sys.setswitchinterval(interval)
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def test_prepare_for_serving_shortens_the_switch_interval(restored: None) -> None:
    sys.setswitchinterval(0.005)
    runtime.prepare_for_serving()
    assert sys.getswitchinterval() == pytest.approx(runtime.SWITCH_INTERVAL)


def test_prepare_for_serving_makes_young_and_full_collections_rarer(restored: None) -> None:
    gc.set_threshold(700, 10, 10)
    runtime.prepare_for_serving()
    assert gc.get_threshold() == (runtime.YOUNG_THRESHOLD, 10, runtime.OLD_THRESHOLD)
    assert runtime.YOUNG_THRESHOLD > 700 and runtime.OLD_THRESHOLD > 10


def test_prepare_for_serving_takes_start_up_objects_out_of_the_collectors_sight(
    restored: None,
) -> None:
    gc.unfreeze()
    loaded = [[n] for n in range(1000)]  # containers that exist at start-up
    runtime.prepare_for_serving()
    assert gc.get_freeze_count() >= len(loaded)
    seen = {id(o) for o in gc.get_objects()}  # what a collection would walk
    assert not any(id(o) in seen for o in loaded)


def test_frozen_objects_are_still_freed_by_reference_counting(restored: None) -> None:
    class Thing:
        pass

    thing = Thing()
    ref = weakref.ref(thing)
    runtime.prepare_for_serving()
    del thing
    assert ref() is None


def test_per_series_state_is_not_walked_by_full_collections() -> None:
    # What grows with the series (counters, rendered prefixes) must be made of strings,
    # numbers and tuples of them, which the collector stops tracking after one collection.
    from exporter.aggregation.builder import AggregationOptions, aggregate
    from exporter.domain.models import Email
    from exporter.polling.store import OrgState

    def poll(ids: range, state: str, previous: Snapshot | None) -> Snapshot:
        emails = [
            Email(id=str(i), state=state, email_type="InboundEmail", work_type_name=f"W{i % 9}")
            for i in ids
        ]
        return aggregate(
            emails, now=1_800_000_000.0, options=AggregationOptions(), previous=previous
        )

    org = OrgState("acme")
    first = poll(range(50), "Queued", None)
    org.record_success(first, 1.0, None, None)
    second = poll(range(25, 75), "Active", first)
    org.record_success(second, 1.0, second.flow, None)
    gc.collect()
    for counters in (org.arrivals, org.departures, org.transitions, org.pickups):
        assert counters and not gc.is_tracked(counters)
    assert not gc.is_tracked(second.memberships) and not gc.is_tracked(second.counts)
