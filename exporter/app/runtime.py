"""Interpreter settings that keep the event loop answering while worker threads run Python.

The event loop shares the GIL with the render thread and the poll worker thread. Two things
decide how long `/healthz` can wait behind them:

- **The switch interval.** A thread that wants the GIL waits up to `sys.getswitchinterval()`
  (5 ms by default) before the holder is asked to let go, and answering one request takes the
  loop several turns. At 1 ms a busy render or poll thread costs a request a few milliseconds,
  not tens (at 240,000 samples with polls: worst /healthz 22-46 ms against 37-56 ms at 2 ms).
- **Full garbage collections.** A full collection walks every tracked object and holds the GIL
  throughout. Half of what a running daemon holds is code and configuration loaded at start,
  which never becomes garbage: `gc.freeze()` moves it out of the collector's sight, halving
  every later full collection (from about 40 ms to 15 ms with 240,000 series). Frozen objects
  are still freed by reference counting; only reference cycles among them would stay, and what
  exists at start-up is the long-lived part of the process anyway. The same holds for what a
  configuration builds (pollers, the compiled service-level policy): `settle_long_lived` freezes
  it once it is in force, after the start and after each reload, so a full collection in any
  thread (it holds the GIL throughout) does not walk it again and again.
- **How often the collector runs.** Almost everything a poll or a render allocates is freed by
  reference counting, yet at the default threshold (a young collection every 700 container
  objects allocated and not yet freed) 200 small organisations polled and scraped made about
  70 young collections a second and a full one every two seconds (20 to 40 ms each, holding
  the GIL). At `YOUNG_THRESHOLD` young collections are a few a second, and at `OLD_THRESHOLD`
  full ones come every few minutes, for the same memory: what a collection would free is
  freed a little later. Worker threads that build something large pause the collector
  altogether (`exporter.domain.collector`).
"""

from __future__ import annotations

import gc
import sys

SWITCH_INTERVAL = 0.001
# Allocations between young collections (CPython's default is 700). Every poll loop is a few
# dozen tracked objects (coroutines, timers, contexts); with thousands of organisations the
# default promoted them so fast that a full collection, holding the GIL for 0.1-0.5 s, ran
# every second or two while the first polls were made. 10,000 makes full collections about
# 14 times rarer; a young collection of 10,000 objects takes about a millisecond.
YOUNG_THRESHOLD = 10_000
# Collections of the middle generation between two full ones (CPython's default is 10). A full
# collection walks every tracked object the polls keep (snapshots, counters, render caches):
# 40 to 55 ms at 400,000 samples from 200 organisations, holding the GIL, and at the default
# one came every 20 to 30 s. What it frees is a few dozen reference cycles (an exception and
# its traceback, say): made ten times rarer, the same few wait a little longer.
OLD_THRESHOLD = 100


def prepare_for_serving() -> None:
    """Tune the interpreter for serving; call once, after start-up, before serving."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, gc.get_threshold()[1], OLD_THRESHOLD)


def settle_long_lived() -> None:
    """Move what exists now out of the collector's sight (a configuration just put in force);
    no collection runs here, so it costs nothing on the event loop."""
    gc.freeze()
