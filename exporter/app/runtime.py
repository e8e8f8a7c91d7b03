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
  exists at start-up is the long-lived part of the process anyway.
- **How often the collector runs.** Almost everything a poll or a render allocates is freed by
  reference counting, yet at the default threshold (a young collection every 700 container
  objects allocated and not yet freed) 200 small organisations polled and scraped made about
  70 young collections a second and a full one every two seconds (20 to 40 ms each, holding
  the GIL). At `YOUNG_THRESHOLD` young collections are a few a second and full ones rare, for
  the same memory: what a collection would free is freed a little later.
"""

from __future__ import annotations

import gc
import sys

SWITCH_INTERVAL = 0.001
YOUNG_THRESHOLD = 10_000


def prepare_for_serving() -> None:
    """Tune the interpreter for serving; call once, after start-up, before serving."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    gc.collect()
    gc.freeze()
