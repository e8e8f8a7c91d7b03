"""Configuration reload (SIGHUP, `POST /-/reload`): read and validate everything, then swap.

The order is the one Prometheus' own reload lacks: the YAML file, its secret files and the web
config file are read and validated, the complete new state is built (sharding, pollers, request
rate limiters, collector), and only then is it swapped in, in one synchronous step. Any error before
the swap leaves everything as it was (the last good configuration keeps running), sets
`config_last_reload_successful` to 0 and is logged and returned as one line.

Reading, validating and building run in a worker thread, so the event loop keeps answering
`/healthz` and scrapes whatever the configuration's size; only the swap runs on the loop.
Reloads are serialised and coalesced: while one runs, every request that arrives joins the one
reload that starts next (it reads the files as they are then), so a storm of SIGHUPs or POSTs
costs at most two reloads, not one per request.

Flags and environment variables are those of the start: `load` closes over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog

from exporter.domain.collector import paused
from exporter.domain.errors import ConfigError
from exporter.fleet.pollers import Fleet, Plan
from exporter.settings import Settings
from exporter.settings.web_config import WebConfig

# Read at start only; a reload that changes them is refused rather than half-applied.
RESTART_ONLY = ("listen_address", "max_connections", "header_timeout")
READ_TIMEOUT = 30.0  # a config or secret "file" that never ends (a FIFO) must not wedge reloads

LoadConfig = Callable[[], tuple[Settings, WebConfig]]
_T = TypeVar("_T")


async def off_loop(fn: Callable[..., _T], *args: Any) -> _T:
    """`fn(*args)` in a daemon thread of its own, awaited, with automatic garbage collection
    paused while it runs.

    Not `asyncio.to_thread`: the default executor's threads are joined when the loop closes and
    again at interpreter exit, so a SIGTERM during a long reload or start would wait for it (the
    docs promise an exit within a second). A daemon thread is abandoned instead; what it built
    was never put in force.

    The pause (`exporter.domain.collector`): building thousands of pollers grows the heap, and
    every full collection it triggered walked all of it while holding the GIL (0.1-0.3 s each
    with 10,000 organisations), stalling the event loop. What is built is long-lived: a build
    hands it to `settle_plan` before collection resumes.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # the awaiting task was cancelled
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            with paused():
                result = fn(*args)
        except BaseException as exc:  # handed to the awaiting task, raised there
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="exporter-build", daemon=True).start()
    return await future


def settle_plan(plan: Plan) -> Plan:
    """Move what a plan built out of the collector's sight; call it at the end of a build
    `off_loop` runs, while collection is paused.

    Otherwise the first young collection once collection resumes walks all of it in one go,
    holding the GIL: the ~10,000 objects of 300 rebuilt pollers, and whatever piled up
    meanwhile (a storm of reload requests), took 10-50 ms of CPU and stalled `/healthz` up to
    110 ms with one core busy. A plan builds no reference cycles, so freezing leaks nothing of
    its own; what it replaces is freed by reference counting. A plan that built no poller (an
    unchanged reload) freezes nothing: only garbage would be frozen with it.
    """
    if plan.rebuilt or plan.added:
        gc.freeze()
    return plan


class WebSwap(Protocol):
    """The web config in force (`exporter.web.access.LiveWebConfig`), as a reload sees it."""

    def check(self, new: WebConfig) -> str | None:
        """Why `new` cannot replace the config in force without a restart, or None."""

    def swap(self, new: WebConfig) -> None:
        """Put `new` in force."""


@dataclass(frozen=True, slots=True)
class Hooks:
    """Synchronous steps of the swap beyond the fleet (collector, logging); must not fail."""

    prepare: Callable[[Settings], Callable[[], None]]


class Reloader:
    """Serialises reloads and applies each one completely or not at all."""

    def __init__(
        self,
        load: LoadConfig,
        fleet: Fleet,
        web: WebSwap,
        current: Settings,
        *,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.time,
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._load = load
        self._fleet = fleet
        self._web = web
        self.current = current
        self._hooks = hooks
        self._clock = clock
        self._log = logger or structlog.get_logger("exporter.fleet.reload")
        self._lock = asyncio.Lock()
        # The reload requests join until it starts; None when none is waiting to start.
        self._pending: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def reload(self, trigger: str) -> None:
        """Reload, or join the reload that starts next; raises ConfigError (already logged) when
        the new configuration is refused. A caller that goes away does not stop the reload."""
        pending = self._pending
        if pending is None:
            pending = self._pending = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._run(pending, trigger), name="reload")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.shield(pending)

    async def _run(self, pending: asyncio.Future[None], trigger: str) -> None:
        async with self._lock:
            if self._pending is pending:  # started: later requests wait for the next one
                self._pending = None
            try:
                await self._reload(trigger)
            except ConfigError as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved here: every caller may have gone away
            except BaseException:
                pending.cancel()
                raise
            else:
                pending.set_result(None)

    def _build(self, cfg: Settings) -> tuple[Plan, Callable[[], None] | None]:
        """The new state, built off the event loop."""
        plan = self._fleet.plan(cfg)
        finish = self._hooks.prepare(cfg) if self._hooks else None
        return settle_plan(plan), finish

    async def _reload(self, trigger: str) -> None:
        """One reload, serialised by `_run`."""
        status = self._fleet.store.fleet
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                cfg, web = await off_loop(self._load)
            self._refuse_restart_only(cfg, web)
            plan, finish = await off_loop(self._build, cfg)
        except TimeoutError:
            status.last_reload_successful = False
            error = ConfigError("config_file", "reload", "reading the files timed out")
            self._log.error("reload_failed", trigger=trigger, error=str(error))
            raise error from None
        except ConfigError as exc:
            status.last_reload_successful = False
            errors = [str(e) for e in exc.all]
            self._log.error("reload_failed", trigger=trigger, error="; ".join(errors))
            raise
        except Exception as exc:  # a bug must not kill the server; nothing was applied
            status.last_reload_successful = False
            self._log.exception("reload_failed", trigger=trigger)
            problem = f"internal error: {type(exc).__name__}"
            raise ConfigError("configuration", "reload", problem) from exc
        # The swap: synchronous, so no scrape or poll runs in the middle of it.
        self._web.swap(web)
        stopped = self._fleet.apply(plan)
        if finish is not None:
            finish()
        self.current = cfg
        status.last_reload_successful = True
        status.last_reload_success = self._clock()
        self._log.info(
            "reloaded",
            trigger=trigger,
            targets=len(plan.runners),
            unchanged=len(plan.kept),
            rebuilt=len(plan.rebuilt),
            added=len(plan.added),
            removed=len(plan.removed),
        )
        await asyncio.gather(*stopped, return_exceptions=True)

    def _refuse_restart_only(self, cfg: Settings, web: WebConfig) -> None:
        for name in RESTART_ONLY:
            old, new = getattr(self.current, name), getattr(cfg, name)
            if old != new:
                problem = f"changing it from {old!r} to {new!r} needs a restart"
                raise ConfigError(name, "reload", problem)
        refusal = self._web.check(web)
        if refusal is not None:
            raise ConfigError("web_config_file", "reload", refusal)
