"""Wiring only: load settings, configure logging, build the objects, run."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import time
from collections.abc import Callable, Sequence

import aiohttp
import structlog
from pydantic import SecretStr

from exporter import __version__, log, settings, web_config
from exporter.aggregate import AggregationOptions
from exporter.auth import ClientCredentials, ClientCredentialsConfig, StaticToken, TokenProvider
from exporter.client import ClientOptions, EmailQueueClient
from exporter.collector import QueueCollector
from exporter.errors import ConfigError
from exporter.families import Registry
from exporter.http import HttpTransport, RetryPolicy, Sleep
from exporter.names import STATES
from exporter.poller import Poller, PollTiming
from exporter.server import build_app, serve
from exporter.settings import Settings, TargetSettings
from exporter.settings.files import client_ssl_context
from exporter.store import OrgState, Store
from exporter.textformat import render
from exporter.web_config import WebConfig

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
) -> Poller:
    """One organisation's transport, token provider, client and poller."""
    transport = HttpTransport(
        session,
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
    api_key = target.api_key.get_secret_value()
    auth: TokenProvider
    if target.access_token is not None:
        auth = StaticToken(target.access_token.get_secret_value())
    elif target.client_id is None or target.client_secret is None:
        raise ConfigError("client_id", "settings", "needed unless access_token is set")
    else:
        auth = ClientCredentials(
            ClientCredentialsConfig(
                token_url=target.token_url,
                client_id=target.client_id,
                client_secret=target.client_secret.get_secret_value(),
                api_key=api_key,
                scope=target.scope,
                auth_method=target.token_auth_method,
            ),
            transport,
            clock=clock,
        )
    client = EmailQueueClient(
        api_url=target.api_url,
        org_id=target.org_id,
        api_key=api_key,
        auth=auth,
        transport=transport,
        options=ClientOptions(
            page_size=cfg.page_size,
            max_concurrency=cfg.max_concurrency,
            max_pages=cfg.max_pages,
            extended_info=target.extended_info,
            email_type=target.email_type,
            work_type_ids=target.work_type_ids,
            states=target.states,
        ),
    )
    timing = PollTiming(poll_interval=cfg.poll_interval, stale_after=cfg.stale_after)
    options = aggregation_options(cfg, target)
    return Poller(state, client, auth, options=options, timing=timing, clock=clock, sleep=sleep)


def build_registry(store: Store, cfg: Settings, clock: Callable[[], float] = time.time) -> Registry:
    """A registry of our own holding only the exporter's collector."""
    registry = Registry()
    registry.register(
        QueueCollector(
            store,
            age_buckets=cfg.age_buckets,
            stale_after=cfg.stale_after,
            poll_interval=cfg.poll_interval,
            clock=clock,
        )
    )
    return registry


def start_delays(count: int, poll_interval: float) -> list[float]:
    """Spread the first polls of many organisations evenly over (at most) ten seconds."""
    window = min(poll_interval, 10.0)
    return [window * i / count for i in range(count)]


async def run(cfg: Settings, *, once: bool = False, web: WebConfig | None = None) -> int:
    """Poll forever and serve, or (`once`) poll every organisation once and print the metrics."""
    web = web or WebConfig()
    logger = structlog.get_logger("exporter")
    store = Store([t.org_id for t in cfg.targets])
    registry = build_registry(store, cfg)
    ssl_context: ssl.SSLContext | bool = True
    if cfg.ca_file is not None:
        try:
            ssl_context = client_ssl_context(cfg.ca_file)
        except ValueError as exc:
            raise ConfigError("ca_file", "settings", str(exc)) from None
    async with aiohttp.ClientSession(trust_env=True) as session:
        pollers = [
            build_poller(t, cfg, session, store.orgs[t.org_id], ssl_context) for t in cfg.targets
        ]
        if once:
            results = await asyncio.gather(*(p.poll_once() for p in pollers))
            sys.stdout.write(render(registry).decode())
            return 0 if all(results) else 1
        delays = start_delays(len(pollers), cfg.poll_interval)
        loops = [lambda p=p, d=d: p.run(d) for p, d in zip(pollers, delays, strict=True)]
        app = build_app(store, registry, loops, middlewares=[web.middleware])
        await serve(
            app,
            cfg.listen_host,
            cfg.listen_port,
            ssl_context=web.ssl_context,
            on_started=lambda url: logger.info(
                "listening", url=url, organisations=len(pollers), version=__version__
            ),
        )
    logger.info("stopped")
    return 0


async def run_demo(cfg: Settings, web: WebConfig | None = None) -> int:
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
        return await run(cfg.model_copy(update={"targets": (target,)}), web=web)
    finally:
        await sim.close()


def _config_error(exc: ConfigError) -> int:
    """Exit code 2, after one line per invalid setting."""
    for error in exc.all:
        print(f"{PROG}: {error}", file=sys.stderr)
    for warning in getattr(exc, "warnings", ()):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code."""
    try:
        invocation = settings.load(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        return _config_error(exc)
    cfg = invocation.settings
    try:
        # Read even for --check-config, so a bad web config file fails validation too.
        web = web_config.load(cfg.web_config_file) if cfg.web_config_file else WebConfig()
    except ConfigError as exc:
        return _config_error(exc)
    if invocation.mode == "version":
        print(f"{PROG} {__version__}")
        return 0
    if invocation.mode == "check_config":
        print(settings.masked_dump(cfg), end="")
        for note in (*invocation.notes, *settings.advice(cfg)):
            print(f"{PROG}: warning: {note}", file=sys.stderr)
        return 0
    log.configure(cfg.log_level, cfg.log_format)
    for note in (*invocation.notes, *settings.advice(cfg)):
        structlog.get_logger("exporter").warning("suspicious setting", advice=note)
    try:
        if invocation.mode == "demo":
            return asyncio.run(run_demo(cfg, web))
        return asyncio.run(run(cfg, once=invocation.mode == "once", web=web))
    except ConfigError as exc:  # a file changed between validation and use
        return _config_error(exc)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:  # e.g. the listen address is taken: one line, not a traceback
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
