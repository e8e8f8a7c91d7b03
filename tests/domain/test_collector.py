"""The garbage collector's pause: process-wide, counted, never turning on what was off."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from exporter.domain.collector import paused, pausing


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_no_collection_inside_a_pause_and_again_after_it() -> None:
    with paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads_end_with_the_last() -> None:
    inside, release, seen = threading.Event(), threading.Event(), []

    def other() -> None:
        with paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(10)
    with paused():
        pass
    seen.append(gc.isenabled())  # the other thread's pause still runs
    release.set()
    thread.join(10)
    assert seen == [False] and gc.isenabled()


def test_a_collector_turned_off_outside_stays_off() -> None:
    gc.disable()
    with paused():
        pass
    assert not gc.isenabled()


def test_pausing_wraps_a_function_and_passes_its_errors_on() -> None:
    def fails() -> None:
        assert not gc.isenabled()
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        pausing(fails)()
    assert gc.isenabled()
    assert pausing(lambda x: x + 1)(1) == 2


def test_overlapping_pauses_never_keep_the_collector_off_past_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from exporter.domain import collector

    now = [0.0]
    monkeypatch.setattr(collector, "_clock", lambda: now[0])
    first, second, third = paused(), paused(), paused()
    first.__enter__()
    now[0] = 1.0
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # one second off: still paused
    now[0] = 1.0 + collector.MAX_PAUSE
    third.__enter__()  # a chain of pauses past the bound: garbage must not pile up
    assert gc.isenabled()
    second.__exit__(None, None, None)
    third.__exit__(None, None, None)
    assert gc.isenabled()
    with paused():  # a fresh pause counts from its own start
        assert not gc.isenabled()
