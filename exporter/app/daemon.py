"""One exporter process: its store, fleet of pollers, registry and web app, started, reloaded
and stopped as one object.

`Daemon.serve` listens at once, then builds the pollers of the configuration off the event loop
(`start`: with thousands of organisations or rules that takes a while, and `/healthz` answers
meanwhile; `/readyz` says 503 until every organisation has polled), and polls and serves until
SIGTERM/SIGINT/SIGQUIT; SIGHUP and `POST /-/reload` (with `web_enable_lifecycle`) reload the
configuration through `exporter.fleet.reload`; SIGUSR1 logs a status line per organisation.
`Daemon.once` polls every organisation once and prints the metrics (`--once`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import structlog
from aiohttp import web

from exporter import __version__, settings
from exporter.app import log
from exporter.app.runtime import prepare_for_serving, settle_long_lived
from exporter.app.signals import STOP_SIGNALS, cancel_on_signals, handle_signals
from exporter.app.wiring import build_poller, build_registry, page_info, queue_collector
from exporter.domain.errors import ConfigError
from exporter.domain.scrub import remember_secrets
from exporter.fleet.pollers import Fleet
from exporter.fleet.reload import Hooks, LoadConfig, Reloader, off_loop, settle_plan
from exporter.metrics.textformat import render
from exporter.polling.poller import Poller
from exporter.polling.store import OrgState, Store
from exporter.settings import Settings, TargetSettings
from exporter.settings.web_config import WebConfig
from exporter.upstream.ratelimit import OrgLane
from exporter.upstream.targets import configured_secrets, upstream_ssl
from exporter.web.access import LiveWebConfig
from exporter.web.connections import (
    ConnectionGuard,
    ConnectionLimits,
    ServerCollector,
    raise_fd_limit,
)
from exporter.web.server import EXPOSITION, PAGE_INFO_SOURCE, build_app, serve


class Daemon:
    """The exporter's parts for one configuration, swapped in place by a reload."""

    def __init__(
        self,
        cfg: Settings,
        session: aiohttp.ClientSession,
        *,
        web: WebConfig | None = None,
        load: LoadConfig | None = None,
        demo_url: str | None = None,
    ) -> None:
        self.cfg = cfg
        self._session = session
        self._demo_url = demo_url
        self.logger = structlog.get_logger("exporter")
        self.live = LiveWebConfig(web or WebConfig())
        self.store = Store([])
        self.collector = queue_collector(self.store, cfg)
        self.registry = build_registry(self.store, cfg, collector=self.collector)
        self.info = page_info(cfg, demo_url)
        self.fleet = Fleet(self.store, self._poller)
        self.store.configured = False  # until `start` has put the first plan in force
        hooks = Hooks(self._prepare)
        self.reloader = Reloader(load, self.fleet, self.live, cfg, hooks=hooks) if load else None
        self._reloads: set[asyncio.Task[None]] = set()
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._failure: BaseException | None = None

    async def start(self) -> None:
        """Build the pollers of the configuration in a worker thread and put them in force."""
        began = time.monotonic()
        plan = await off_loop(lambda: settle_plan(self.fleet.plan(self.cfg)))
        self.fleet.apply(plan)
        settle_long_lived()
        self.store.fleet.last_reload_success = time.time()
        self._started.set()
        seconds = round(time.monotonic() - began, 3)
        self.logger.info("started", organisations=len(self.store.orgs), seconds=seconds)

    async def _run_fleet(self) -> None:
        """The app's poll task: start, then poll until cancelled; a start that fails stops
        the daemon (`serve` raises its error: a configuration error exits 2)."""
        try:
            await self.start()
        except Exception as exc:
            self._failure = exc
            self._stop.set()
            return
        await self.fleet.run()

    async def reload(self, trigger: str) -> None:
        """Reload the configuration once the first one is in force; raises ConfigError."""
        if self.reloader is None:
            raise ConfigError("config_file", trigger, "this daemon cannot reload")
        await self._started.wait()
        await self.reloader.reload(trigger)

    def _poller(
        self, target: TargetSettings, cfg: Settings, state: OrgState, limiter: OrgLane | None
    ) -> Poller:
        return build_poller(target, cfg, self._session, state, upstream_ssl(cfg), limiter=limiter)

    async def once(self) -> int:
        """Poll every organisation once and print the metrics; 1 when any poll failed."""
        # Ctrl-C or SIGTERM: exit 130 / 143 with nothing printed; the write is never cut.
        with cancel_on_signals():
            await self.start()
            results = await asyncio.gather(*(p.poll_once() for p in self.fleet.pollers))
            sys.stdout.write(render(self.registry).decode())
            sys.stdout.flush()
        return 0 if all(results) else 1

    def _prepare(self, new: Settings) -> Callable[[], None]:
        """A reload's swap of the collector, landing page and logging (built before, applied
        in the reload's one synchronous step). An unchanged configuration swaps nothing: a
        storm of SIGHUPs must not make every scrape render afresh."""
        if new == self.cfg:
            return lambda: None
        fresh = queue_collector(self.store, new)
        fresh_info = page_info(new, self._demo_url)
        secrets = configured_secrets(new)
        notes = settings.advice(new)

        def finish() -> None:
            remember_secrets(secrets)
            self.registry.unregister(self.collector)
            self.registry.register(fresh)
            self.collector, self.info, self.cfg = fresh, fresh_info, new
            log.configure(new.log_level, new.log_format)
            for note in notes:
                self.logger.warning("suspicious setting", advice=note)
            settle_long_lived()

        return finish

    def hangup(self) -> None:
        """SIGHUP: reload in the background; a refusal is only logged."""
        self.logger.info("reload requested (SIGHUP)")
        if self.reloader is None:
            self.logger.warning("reload_unavailable", trigger="SIGHUP")
            return
        task = asyncio.create_task(_reload_quietly(self.reload, "SIGHUP"))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def log_status(self, guard: ConnectionGuard) -> None:
        """SIGUSR1: one line per organisation, and the server's connections, in the log."""
        for state in self.store.orgs.values():
            self.logger.info(
                "status",
                org=state.org,
                up=state.up,
                last_success=state.last_success,
                last_error_reason=state.last_error_reason,
                last_error=state.last_error,
            )
        rejected = {f"rejected_{reason}": n for reason, n in guard.stats.rejections().items()}
        self.logger.info("status", http_connections=guard.stats.open, **rejected)

    def web_app(self, guard: ConnectionGuard) -> web.Application:
        """The HTTP app, its per-server collector registered."""
        app = build_app(
            self.store, self.registry, [self._run_fleet], middlewares=[self.live.middleware],
            reload=self.reload if self.reloader else None,
            lifecycle=lambda: self.cfg.web_enable_lifecycle,
        )  # fmt: skip
        app[PAGE_INFO_SOURCE] = lambda: self.info
        live = self.live
        self.registry.register(
            ServerCollector(
                guard,
                auth_busy=lambda: live.auth.busy if live.auth else 0,
                metrics_busy=lambda: app[EXPOSITION].busy,
            )
        )
        return app

    async def serve(self) -> None:
        """Poll and serve until a stop signal."""
        cfg = self.cfg
        limits = ConnectionLimits(
            max_connections=cfg.max_connections, header_timeout=cfg.header_timeout
        )
        guard = ConnectionGuard(limits)
        app = self.web_app(guard)
        if warning := raise_fd_limit(cfg.max_connections):
            self.logger.warning("file descriptor limit", problem=warning)
        prepare_for_serving()
        stop = self._stop
        handlers = {sig: stop.set for sig in STOP_SIGNALS} | {
            signal.SIGHUP: self.hangup,
            signal.SIGUSR1: lambda: self.log_status(guard),
        }
        with handle_signals(handlers):
            await serve(
                app, cfg.listen_host, cfg.listen_port, ssl_context=self.live.server_context,
                on_started=self._listening, guard=guard, stop=stop,
            )  # fmt: skip
        if self._failure is not None:
            raise self._failure

    def _listening(self, url: str) -> None:
        cfg = self.cfg
        self.logger.info(
            "listening",
            url=url,
            shard=cfg.shard,
            total_shards=cfg.total_shards,
            version=__version__,
        )


async def _reload_quietly(reload: Callable[[str], Awaitable[None]], trigger: str) -> None:
    """A reload whose refusal is only logged (SIGHUP has no one to answer to)."""
    with contextlib.suppress(ConfigError):
        await reload(trigger)


async def run(
    cfg: Settings,
    *,
    once: bool = False,
    web: WebConfig | None = None,
    load: LoadConfig | None = None,
    demo_url: str | None = None,
) -> int:
    """Poll forever and serve, or (`once`) poll every organisation once and print the metrics.

    With `load`, SIGHUP and `POST /-/reload` reload the configuration through it.
    """
    # Proxies from the environment are applied by the transport (HttpTransport._proxy).
    async with aiohttp.ClientSession() as session:
        daemon = Daemon(cfg, session, web=web, load=load, demo_url=demo_url)
        if once:
            return await daemon.once()
        await daemon.serve()
    daemon.logger.info("stopped")
    return 0
