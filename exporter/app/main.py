"""Wiring only: load settings, configure logging, build the objects, run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import aiohttp
import structlog
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from pydantic import SecretStr

from exporter import __version__, settings
from exporter.aggregation.builder import AggregationOptions
from exporter.app import log
from exporter.app.check_connection import check_connection
from exporter.app.runtime import prepare_for_serving
from exporter.app.signals import STOP_SIGNALS, Interrupted, cancel_on_signals, handle_signals
from exporter.domain.errors import ConfigError
from exporter.domain.names import STATES
from exporter.fleet.policies import service_level_policy
from exporter.fleet.pollers import Fleet
from exporter.fleet.reload import Hooks, LoadConfig, Reloader
from exporter.metrics.families import Registry, series_cost
from exporter.metrics.fleet import FleetCollector
from exporter.metrics.queue import QueueCollector, declared_families
from exporter.metrics.textformat import render
from exporter.polling.poller import Poller, PollTiming
from exporter.polling.store import OrgState, Store
from exporter.settings import Settings, TargetSettings
from exporter.settings.web_config import WebConfig
from exporter.upstream.client import EmailQueueClient
from exporter.upstream.ratelimit import Limiter
from exporter.upstream.targets import client_options, token_provider, upstream_ssl
from exporter.upstream.transport import HttpTransport, RetryPolicy, Sleep
from exporter.web.access import LiveWebConfig
from exporter.web.connections import (
    ConnectionGuard,
    ConnectionLimits,
    ServerCollector,
    raise_fd_limit,
)
from exporter.web.landing import PageInfo
from exporter.web.server import EXPOSITION, PAGE_INFO_SOURCE, build_app, serve

PROG = "alvaria-emailqueue-exporter"


def aggregation_options(cfg: Settings, target: TargetSettings) -> AggregationOptions:
    """The aggregation's view of the settings for one organisation."""
    return AggregationOptions(
        waiting_states=frozenset(cfg.waiting_states),
        series_ttl=cfg.series_ttl,
        max_work_types=cfg.max_work_types,
        agent_metrics=cfg.agent_metrics,
        max_agents=cfg.max_agents,
        zero_fill_states=target.states or STATES,
        service_levels=service_level_policy(cfg),
        wait_buckets=cfg.age_buckets,
        max_series=cfg.max_series,
        max_label_length=cfg.max_label_length,
        series_cost=series_cost(declared_families(), len(cfg.age_buckets)),
    )


def build_poller(
    target: TargetSettings,
    cfg: Settings,
    session: aiohttp.ClientSession,
    state: OrgState,
    ssl_context: ssl.SSLContext | bool,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Sleep = asyncio.sleep,
    limiter: Limiter | None = None,
) -> Poller:
    """One organisation's transport, token provider, client and poller."""
    transport = HttpTransport(
        session,
        limiter=limiter,
        request_timeout=cfg.request_timeout,
        max_response_bytes=cfg.max_response_bytes,
        # A Retry-After longer than a poll interval is not waited out inside the poll: the poll
        # fails as rate limited and the poller puts the next one off instead.
        retry=RetryPolicy(
            max_retries=cfg.max_retries, max_retry_after=min(60.0, cfg.poll_interval)
        ),
        observer=state.observe_request,
        sleep=sleep,
        clock=clock,
        ssl=ssl_context,
    )
    auth = token_provider(target, transport, clock)
    client = EmailQueueClient(
        api_url=target.api_url,
        org_id=target.org_id,
        api_key=target.api_key.get_secret_value(),
        auth=auth,
        transport=transport,
        options=client_options(cfg, target),
    )
    timing = PollTiming(poll_interval=cfg.poll_interval, stale_after=cfg.stale_after)
    options = aggregation_options(cfg, target)
    return Poller(state, client, auth, options=options, timing=timing, clock=clock, sleep=sleep)


def queue_collector(
    store: Store, cfg: Settings, clock: Callable[[], float] = time.time
) -> QueueCollector:
    """The collector rendering the store with `cfg`'s buckets, staleness and interval."""
    return QueueCollector(
        store,
        age_buckets=cfg.age_buckets,
        stale_after=cfg.stale_after,
        poll_interval=cfg.poll_interval,
        clock=clock,
    )


def build_registry(
    store: Store,
    cfg: Settings,
    clock: Callable[[], float] = time.time,
    collector: QueueCollector | None = None,
) -> Registry:
    """A registry of our own: the exporter's collectors, and the process and Python runtime ones."""
    registry = Registry()
    # process_* (RSS, CPU, open files, start time), python_gc_*, python_info, as every
    # prometheus_client exporter has them; each registers itself here, not in the global one.
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(collector or queue_collector(store, cfg, clock))
    registry.register(FleetCollector(store))
    return registry


def config_loader(
    argv: Sequence[str],
    environ: Mapping[str, str],
    targets: tuple[TargetSettings, ...] | None = None,
) -> LoadConfig:
    """Re-reads the config, secret and web config files with the flags and env of the start."""
    argv, environ = list(argv), dict(environ)

    def load() -> tuple[Settings, WebConfig]:
        invocation = settings.load(argv, environ)
        cfg = invocation.settings
        if targets is not None:  # --demo polls its own simulator whatever the file says
            cfg = cfg.model_copy(update={"targets": targets})
        return cfg, invocation.web

    return load


def page_info(cfg: Settings, demo_url: str | None = None) -> PageInfo:
    """What the landing page shows beyond the store."""
    return PageInfo(
        poll_interval=cfg.poll_interval,
        stale_after=cfg.stale_after,
        waiting_states=frozenset(cfg.waiting_states),
        api_hosts={t.org_id: urlsplit(t.api_url).hostname or "" for t in cfg.targets},
        demo_url=demo_url,
        shard=f"{cfg.shard} of {cfg.total_shards}",
    )


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
    live = LiveWebConfig(web or WebConfig())
    logger = structlog.get_logger("exporter")
    store = Store([])
    collector = queue_collector(store, cfg)
    registry = build_registry(store, cfg, collector=collector)
    # Proxies from the environment are applied by the transport (http.HttpTransport._proxy).
    async with aiohttp.ClientSession() as session:

        def build(
            target: TargetSettings, c: Settings, state: OrgState, limiter: Limiter | None
        ) -> Poller:
            ssl_context = upstream_ssl(c)
            return build_poller(target, c, session, state, ssl_context, limiter=limiter)

        fleet = Fleet(store, build)
        fleet.apply(fleet.plan(cfg))
        store.fleet.last_reload_success = time.time()
        if once:
            # Ctrl-C or SIGTERM: exit 130 / 143 with nothing printed; the write is never cut.
            with cancel_on_signals():
                results = await asyncio.gather(*(p.poll_once() for p in fleet.pollers))
                sys.stdout.write(render(registry).decode())
                sys.stdout.flush()
            return 0 if all(results) else 1
        info = page_info(cfg, demo_url)

        def prepare(new: Settings) -> Callable[[], None]:
            fresh = queue_collector(store, new)
            fresh_info = page_info(new, demo_url)

            def finish() -> None:
                nonlocal collector, info
                registry.unregister(collector)
                registry.register(fresh)
                collector, info = fresh, fresh_info
                log.configure(new.log_level, new.log_format)

            return finish

        reloader = Reloader(load, fleet, live, cfg, hooks=Hooks(prepare)) if load else None
        reloads: set[asyncio.Task[None]] = set()

        def hangup() -> None:
            logger.info("reload requested (SIGHUP)")
            if reloader is None:
                logger.warning("reload_unavailable", trigger="SIGHUP")
                return
            task = asyncio.create_task(_reload_quietly(reloader, "SIGHUP"))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        app = build_app(
            store,
            registry,
            [fleet.run],
            middlewares=[live.middleware],
            reload=reloader.reload if reloader else None,
        )
        app[PAGE_INFO_SOURCE] = lambda: info
        guard = ConnectionGuard(
            ConnectionLimits(max_connections=cfg.max_connections, header_timeout=cfg.header_timeout)
        )
        registry.register(
            ServerCollector(
                guard,
                auth_busy=lambda: live.auth.busy if live.auth else 0,
                metrics_busy=lambda: app[EXPOSITION].busy,
            )
        )
        if warning := raise_fd_limit(cfg.max_connections):
            logger.warning("file descriptor limit", problem=warning)
        prepare_for_serving()
        stop = asyncio.Event()
        handlers = {sig: stop.set for sig in STOP_SIGNALS} | {
            signal.SIGHUP: hangup,
            signal.SIGUSR1: lambda: log_status(logger, store, guard),
        }
        with handle_signals(handlers):
            await serve(
                app,
                cfg.listen_host,
                cfg.listen_port,
                ssl_context=live.server_context,
                on_started=lambda url: logger.info(
                    "listening",
                    url=url,
                    organisations=len(store.orgs),
                    shard=cfg.shard,
                    total_shards=cfg.total_shards,
                    version=__version__,
                ),
                guard=guard,
                stop=stop,
            )
    logger.info("stopped")
    return 0


async def _reload_quietly(reloader: Reloader, trigger: str) -> None:
    """A reload whose refusal is only logged (SIGHUP has no one to answer to)."""
    with contextlib.suppress(ConfigError):
        await reloader.reload(trigger)


def log_status(
    logger: structlog.typing.FilteringBoundLogger, store: Store, guard: ConnectionGuard
) -> None:
    """SIGUSR1: one line per organisation, and the server's connections, in the log."""
    for state in store.orgs.values():
        logger.info(
            "status",
            org=state.org,
            up=state.up,
            last_success=state.last_success,
            last_error_reason=state.last_error_reason,
            last_error=state.last_error,
        )
    rejected = {f"rejected_{reason}": n for reason, n in guard.stats.rejections().items()}
    logger.info("status", http_connections=guard.stats.open, **rejected)


async def run_demo(
    cfg: Settings,
    web: WebConfig | None = None,
    argv: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> int:
    """Start the built-in simulator on a free loopback port and poll it."""
    from exporter.simulator import SimulatorConfig, start_simulator

    logger = structlog.get_logger("exporter")
    demo = SimulatorConfig()
    sim = await start_simulator(demo)
    try:
        logger.info("demo simulator started", api_url=sim.base_url)
        target = TargetSettings(
            org_id=demo.org_id,
            api_key=SecretStr(demo.api_key),
            client_id=demo.client_id,
            client_secret=SecretStr(demo.client_secret),
            api_url=sim.base_url,
            token_url=sim.token_url,
        )
        load = config_loader(argv, environ, (target,)) if environ is not None else None
        demo_cfg = cfg.model_copy(update={"targets": (target,)})
        return await run(demo_cfg, web=web, load=load, demo_url=sim.base_url)
    finally:
        await sim.close()


async def _check_connection(cfg: Settings) -> int:
    """`--check-connection`; Ctrl-C or SIGTERM stop it with exit 130 / 143, not as a failed step."""
    with cancel_on_signals():
        return await check_connection(cfg, sys.stdout.write)


def _config_error(exc: ConfigError) -> int:
    """Exit code 2, after one line per invalid setting."""
    for error in exc.all:
        print(f"{PROG}: {error}", file=sys.stderr)
    for warning in getattr(exc, "warnings", ()):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        invocation = settings.load(argv, os.environ)
    except ConfigError as exc:
        return _config_error(exc)
    cfg, web = invocation.settings, invocation.web
    if invocation.mode == "version":
        print(f"{PROG} {__version__}")
        return 0
    if invocation.mode == "check_config":
        print(settings.masked_dump(cfg), end="")
        for note in (*invocation.notes, *settings.advice(cfg)):
            print(f"{PROG}: warning: {note}", file=sys.stderr)
        return 0
    if invocation.mode == "check_connection":
        try:
            return asyncio.run(_check_connection(cfg))
        except ConfigError as exc:  # a file changed between validation and use
            return _config_error(exc)
        except Interrupted as exc:  # the lines printed so far stand; the step cut short is not one
            print(f"{PROG}: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            return 130
    log.configure(cfg.log_level, cfg.log_format)
    for note in (*invocation.notes, *settings.advice(cfg)):
        structlog.get_logger("exporter").warning("suspicious setting", advice=note)
    try:
        if invocation.mode == "demo":
            return asyncio.run(run_demo(cfg, web, argv, os.environ))
        load = config_loader(argv, os.environ)
        return asyncio.run(run(cfg, once=invocation.mode == "once", web=web, load=load))
    except ConfigError as exc:  # a file changed between validation and use
        return _config_error(exc)
    except Interrupted as exc:  # --once stopped by Ctrl-C or SIGTERM: a script must not see 0
        print(f"{PROG}: {exc}; nothing printed", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # before the event loop took the signal over
        return 130
    except OSError as exc:  # e.g. the listen address is taken: one line, not a traceback
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
