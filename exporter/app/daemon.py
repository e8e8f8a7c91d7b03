"""One exporter process: its store, fleet of pollers, registry and web app, started, reloaded
and stopped as one object.

`Daemon.serve` polls and serves until SIGTERM/SIGINT/SIGQUIT; SIGHUP and `POST /-/reload` reload
the configuration through `exporter.fleet.reload`; SIGUSR1 logs a status line per organisation.
`Daemon.once` polls every organisation once and prints the metrics (`--once`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable

import aiohttp
import structlog
from aiohttp import web

from exporter import __version__
from exporter.app import log
from exporter.app.runtime import prepare_for_serving
from exporter.app.signals import STOP_SIGNALS, cancel_on_signals, handle_signals
from exporter.app.wiring import build_poller, build_registry, page_info, queue_collector
from exporter.domain.errors import ConfigError
from exporter.domain.scrub import remember_secrets
from exporter.fleet.pollers import Fleet
from exporter.fleet.reload import Hooks, LoadConfig, Reloader
from exporter.metrics.textformat import render
from exporter.polling.poller import Poller
from exporter.polling.store import OrgState, Store
from exporter.settings import Settings, TargetSettings
from exporter.settings.web_config import WebConfig
from exporter.upstream.ratelimit import Limiter
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
        self.fleet.apply(self.fleet.plan(cfg))
        self.store.fleet.last_reload_success = time.time()
        hooks = Hooks(self._prepare)
        self.reloader = Reloader(load, self.fleet, self.live, cfg, hooks=hooks) if load else None
        self._reloads: set[asyncio.Task[None]] = set()

    def _poller(
        self, target: TargetSettings, cfg: Settings, state: OrgState, limiter: Limiter | None
    ) -> Poller:
        return build_poller(target, cfg, self._session, state, upstream_ssl(cfg), limiter=limiter)

    async def once(self) -> int:
        """Poll every organisation once and print the metrics; 1 when any poll failed."""
        # Ctrl-C or SIGTERM: exit 130 / 143 with nothing printed; the write is never cut.
        with cancel_on_signals():
            results = await asyncio.gather(*(p.poll_once() for p in self.fleet.pollers))
            sys.stdout.write(render(self.registry).decode())
            sys.stdout.flush()
        return 0 if all(results) else 1

    def _prepare(self, new: Settings) -> Callable[[], None]:
        """A reload's swap of the collector, landing page and logging (built before, applied
        in the reload's one synchronous step)."""
        fresh = queue_collector(self.store, new)
        fresh_info = page_info(new, self._demo_url)

        secrets = configured_secrets(new)

        def finish() -> None:
            remember_secrets(secrets)
            self.registry.unregister(self.collector)
            self.registry.register(fresh)
            self.collector, self.info, self.cfg = fresh, fresh_info, new
            log.configure(new.log_level, new.log_format)

        return finish

    def hangup(self) -> None:
        """SIGHUP: reload in the background; a refusal is only logged."""
        self.logger.info("reload requested (SIGHUP)")
        if self.reloader is None:
            self.logger.warning("reload_unavailable", trigger="SIGHUP")
            return
        task = asyncio.create_task(_reload_quietly(self.reloader, "SIGHUP"))
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
        reload = self.reloader.reload if self.reloader else None
        app = build_app(
            self.store, self.registry, [self.fleet.run], middlewares=[self.live.middleware],
            reload=reload,
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
        stop = asyncio.Event()
        handlers = {sig: stop.set for sig in STOP_SIGNALS} | {
            signal.SIGHUP: self.hangup,
            signal.SIGUSR1: lambda: self.log_status(guard),
        }
        with handle_signals(handlers):
            await serve(
                app, cfg.listen_host, cfg.listen_port, ssl_context=self.live.server_context,
                on_started=self._listening, guard=guard, stop=stop,
            )  # fmt: skip

    def _listening(self, url: str) -> None:
        cfg = self.cfg
        self.logger.info(
            "listening",
            url=url,
            organisations=len(self.store.orgs),
            shard=cfg.shard,
            total_shards=cfg.total_shards,
            version=__version__,
        )


async def _reload_quietly(reloader: Reloader, trigger: str) -> None:
    """A reload whose refusal is only logged (SIGHUP has no one to answer to)."""
    with contextlib.suppress(ConfigError):
        await reloader.reload(trigger)


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
