"""The exporter's objects built from the settings: per-organisation pollers, the collectors and
registry, the landing page's view, and the loader a reload reads the configuration with."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

from exporter import settings
from exporter.aggregation.builder import AggregationOptions
from exporter.domain.names import STATES
from exporter.fleet.policies import service_level_policy
from exporter.fleet.reload import LoadConfig
from exporter.metrics.families import Registry, series_cost
from exporter.metrics.fleet import FleetCollector
from exporter.metrics.queue import QueueCollector, declared_families
from exporter.polling.poller import Poller, PollTiming
from exporter.polling.store import OrgState, Store
from exporter.settings import Settings, TargetSettings
from exporter.settings.web_config import WebConfig
from exporter.upstream.client import EmailQueueClient
from exporter.upstream.ratelimit import OrgLane, RequestRateLimiter
from exporter.upstream.targets import client_options, token_provider
from exporter.upstream.transport import HttpTransport, RetryPolicy, Sleep
from exporter.web.landing import PageInfo


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
    limiter: OrgLane | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Poller:
    """One organisation's transport, token provider, client and poller; `limiter` is its share
    of its API key's rate limit (a key of its own when None)."""
    if limiter is None:
        limiter = RequestRateLimiter(None, clock=clock).lane(
            target.org_id,
            state.observe_rate_limit_wait,
            max_wait=cfg.stale_after,
            sleep=sleep,
            monotonic=monotonic,
        )
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
        on_limits=state.observe_limits,
        on_certificate=state.observe_certificate,
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
    return Poller(
        state,
        client,
        auth,
        options=options,
        timing=timing,
        clock=clock,
        monotonic=monotonic,
        sleep=sleep,
        pacer=limiter,
    )


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
