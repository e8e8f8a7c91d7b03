"""The interpreter settings the daemon serves with (exporter.runtime)."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from exporter import runtime


@pytest.fixture
def restored() -> Iterator[None]:
    interval = sys.getswitchinterval()
    yield
    sys.setswitchinterval(interval)
    gc.unfreeze()


def test_prepare_for_serving_shortens_the_switch_interval(restored: None) -> None:
    sys.setswitchinterval(0.005)
    runtime.prepare_for_serving()
    assert sys.getswitchinterval() == pytest.approx(runtime.SWITCH_INTERVAL)


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
