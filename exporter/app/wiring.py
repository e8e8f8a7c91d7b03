"""The exporter's objects built from the settings: per-organisation pollers, the collectors and
registry, the landing page's view, and the loader a reload reads the configuration with."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

from exporter import settings
from exporter.aggregation.builder import AggregationOptions
from exporter.aggregation.handling import HandlingOptions
from exporter.aggregation.series_budget import SeriesCost
from exporter.domain import names
from exporter.domain.names import STATES
from exporter.fleet.policies import service_level_policy
from exporter.fleet.reload import LoadConfig
from exporter.metrics.families import Registry, series_cost
from exporter.metrics.fleet import FleetCollector
from exporter.metrics.fleet import declared_families as fleet_families
from exporter.metrics.queue import QueueCollector, declared_families
from exporter.polling.poller import Poller, PollTiming
from exporter.polling.store import OrgState, Store
from exporter.settings import Settings, TargetSettings
from exporter.settings.models import denied_by
from exporter.settings.web_config import WebConfig
from exporter.upstream.client import ClientOptions, EmailQueueClient
from exporter.upstream.first_sight import FIRST_SIGHT_FIELDS
from exporter.upstream.ratelimit import OrgLane, RequestRateLimiter
from exporter.upstream.targets import client_options, token_provider
from exporter.upstream.transport import HttpTransport, RetryPolicy, Sleep
from exporter.web.landing import PageInfo


def denied_families(cfg: Settings) -> frozenset[str]:
    """The declared names of the families `metric_denylist` removes."""
    return _denied(cfg.metric_denylist)


# One answer per denylist, not one per organisation: aggregation_options, handling_options and
# the client options of every organisation of a configuration ask the same question.
@functools.lru_cache(maxsize=8)
def _denied(denylist: tuple[str, ...]) -> frozenset[str]:
    families = (*declared_families(), *fleet_families())
    return frozenset(f.name for f in families if denied_by(denylist, f.exposed_name))


@functools.lru_cache(maxsize=8)
def _series_cost(denylist: tuple[str, ...], buckets: int) -> SeriesCost:
    """What a pair, group and agent cost with these families denied and this many age buckets."""
    denied = _denied(denylist)
    return series_cost([f for f in declared_families() if f.name not in denied], buckets)


def handling_options(cfg: Settings) -> HandlingOptions:
    """Which handling KPIs are measured: those whose families are not denied (SPEC §10)."""
    denied = denied_families(cfg)
    return HandlingOptions(
        handle=names.HANDLE not in denied,
        resolution=names.RESOLUTION not in denied,
        dwell=names.STATE_DWELL not in denied,
        delivery_lag=names.DELIVERY_LAG not in denied,
        repeat_contacts=names.REPEAT_CONTACTS not in denied,
        agents=not {names.AGENTS_WORKING, names.AGENT_LOAD} <= denied,
        work_type_info=names.WORK_TYPE_INFO not in denied,
        thread_memory=cfg.thread_memory,
        max_threads=cfg.max_threads,
    )


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
        series_cost=_series_cost(cfg.metric_denylist, len(cfg.age_buckets)),
        handling=handling_options(cfg),
        work_type_label=cfg.work_type_label,
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
        options=_client_options(cfg, target),
    )
    client.prepare()  # pollers are built in a worker thread: not at the first poll, on the loop
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


def _client_options(cfg: Settings, target: TargetSettings) -> ClientOptions:
    """What the client asks for, with the item fields the enabled handling KPIs read."""
    fields = handling_options(cfg).email_fields()
    if cfg.work_type_label == "id":
        fields |= {"work_type_id"}
    options = client_options(cfg, target)
    return dataclasses.replace(options, extra_fields=fields, first_sight_fields=FIRST_SIGHT_FIELDS)


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
        denied=denied_families(cfg),
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
    registry.register(FleetCollector(store, denied_families(cfg)))
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
