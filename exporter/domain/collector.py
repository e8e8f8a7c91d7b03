"""Pausing Python's cyclic garbage collector while a worker thread builds something large.

A collection holds the GIL from start to end, in whichever thread happens to trigger it, so
the event loop waits for it. A render of 400,000 samples or a configuration of 300
organisations allocates hundreds of thousands of containers that reference counting frees (or
that live on); the collector, triggered every `YOUNG_THRESHOLD` allocations meanwhile, walked
them again and again and found nothing to free: 10 to 25 ms each time, twenty times in the
20 s of a fleet's scrapes, each a stall of `/healthz`. Inside `paused()` it does not run; it
runs again when the last pause ends, over what survived.

The pause is process-wide (CPython has one collector) and counted, so overlapping pauses in
several threads end with the last one, and it never re-enables a collector that was disabled
outside it. What a pause defers is bounded: reference cycles made meanwhile wait for the next
collection after it, and pauses that overlap one another (a render thread and a poll worker
both busy under load) never keep the collector off for more than `MAX_PAUSE` seconds in a
row: a pause that begins or ends after that turns it back on until every pause has ended.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")

# The longest overlapping pauses keep the collector off (one pause alone lasts as long as its
# work: a render, a poll's end, a configuration build).
MAX_PAUSE = 2.0

_lock = threading.Lock()
_depth = 0
_resume = False  # whether the collector was enabled when the first pause began
_since = 0.0  # when it was turned off
_clock = time.monotonic


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection in any thread until the last pause ends."""
    global _depth, _resume, _since
    with _lock:
        if _depth == 0:
            _resume, _since = gc.isenabled(), _clock()
            gc.disable()
        else:
            _bound()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                if _resume:
                    gc.enable()
            else:
                _bound()


def _bound() -> None:
    """Turn the collector back on when overlapping pauses have kept it off for `MAX_PAUSE`."""
    if _resume and _clock() - _since > MAX_PAUSE:
        gc.enable()


def pausing(fn: Callable[_P, _T]) -> Callable[_P, _T]:
    """`fn`, run inside `paused()`."""

    @wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        with paused():
            return fn(*args, **kwargs)

    return run
