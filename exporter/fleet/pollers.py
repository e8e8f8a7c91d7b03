"""The running set of pollers, and how a new configuration replaces it.

`plan(settings)` builds everything a configuration needs (sharding, pollers, request rate limiters)
without touching what runs; `apply(plan)` then swaps it in synchronously, with no `await` in
between, so a scrape sees either the old set of organisations or the new one, never a mix.
A target whose poller recipe is unchanged keeps its poller, its task, its state and its cached
token; one whose credentials or timing changed gets a new poller but keeps its state; one whose
query or aggregation changed starts afresh; removed ones disappear; new ones start polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from exporter.fleet import shards
from exporter.polling.poller import Poller
from exporter.polling.store import OrgState, Store
from exporter.settings import Settings, TargetSettings
from exporter.upstream.ratelimit import OrgLane, RequestRateLimiter

BuildPoller = Callable[[TargetSettings, Settings, OrgState, OrgLane | None], Poller]
# Settings that never change how a poller is built or what it produces.
_NOT_POLLER = {"targets", "listen_address", "log_level", "log_format", "config_file"}
_NOT_POLLER |= {"web_config_file", "shard", "total_shards", "max_requests_per_second"}
# Target settings that only say how to authenticate: changing them keeps the organisation's state.
_CREDENTIALS = {"api_key", "client_id", "client_secret", "access_token", "region", "token_url"}
_CREDENTIALS |= {"token_auth_method", "scope"}
# Exporter-wide settings that only say how fast or how hard to poll.
_TIMING = {"poll_interval", "page_size", "max_concurrency", "request_timeout", "max_retries"}
_TIMING |= {"max_pages", "max_response_bytes", "ca_file", "stale_after", "age_buckets"}
# ...and what is measured and remembered, not what it means (work_type_label changes meaning).
_TIMING |= {"metric_denylist", "thread_memory", "max_threads"}


def _recipe(cfg: Settings, target: TargetSettings) -> tuple[object, ...]:
    """Everything a poller is built from; equal recipes mean the running poller can stay."""
    poller_settings = {k: v for k, v in cfg if k not in _NOT_POLLER}
    return (target, tuple(poller_settings.items()))


def _identity(cfg: Settings, target: TargetSettings) -> tuple[object, ...]:
    """What the organisation's snapshot and counters mean; equal = the state carries over."""
    query = {k: v for k, v in target if k not in _CREDENTIALS}
    meaning = {k: v for k, v in cfg if k not in _NOT_POLLER | _TIMING}
    return (tuple(query.items()), tuple(meaning.items()))


def start_delays(count: int, poll_interval: float) -> list[float]:
    """Spread the first polls of many organisations evenly over (at most) ten seconds."""
    window = min(poll_interval, 10.0)
    return [window * i / count for i in range(count)]


@dataclass(slots=True)
class _Runner:
    recipe: tuple[object, ...]
    identity: tuple[object, ...]
    key: bytes  # fingerprint of the API key: which request rate limiter the poller shares
    poller: Poller
    start_delay: float = 0.0
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A complete new state, built but not yet running."""

    settings: Settings
    runners: dict[str, _Runner]
    limiters: dict[bytes, RequestRateLimiter]
    kept: tuple[str, ...] = ()
    rebuilt: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass
class Fleet:
    """Owns the pollers of the organisations this shard polls, and their tasks."""

    store: Store
    build: BuildPoller
    logger: structlog.typing.FilteringBoundLogger = field(
        default_factory=lambda: structlog.get_logger("exporter.fleet.pollers")
    )
    _runners: dict[str, _Runner] = field(default_factory=dict)
    _limiters: dict[bytes, RequestRateLimiter] = field(default_factory=dict)
    _running: bool = False
    _dead: asyncio.Event | None = None

    @property
    def pollers(self) -> list[Poller]:
        """The current pollers, in configuration order."""
        return [runner.poller for runner in self._runners.values()]

    def plan(self, cfg: Settings) -> Plan:
        """Build the state `cfg` asks for; raises ConfigError and changes nothing running."""
        targets = shards.owned(
            cfg.targets, cfg.shard, cfg.total_shards, lambda t: t.api_key.get_secret_value()
        )
        limiters: dict[bytes, RequestRateLimiter] = {}
        runners: dict[str, _Runner] = {}
        kept: list[str] = []
        rebuilt: list[str] = []
        added: list[str] = []
        for target in targets:
            key = shards.key_fingerprint(target.api_key.get_secret_value())
            if key not in limiters:
                limiters[key] = self._limiters.get(key) or RequestRateLimiter(
                    cfg.max_requests_per_second
                )
            recipe, identity = _recipe(cfg, target), _identity(cfg, target)
            old = self._runners.get(target.org_id)
            if old is not None and old.recipe == recipe:
                runners[target.org_id] = old
                kept.append(target.org_id)
                continue
            carried = old is not None and old.identity == identity
            state = old.poller.state if old is not None and carried else OrgState(target.org_id)
            lane = limiters[key].lane(
                target.org_id, state.observe_rate_limit_wait, max_wait=cfg.stale_after
            )
            poller = self.build(target, cfg, state, lane)
            runners[target.org_id] = _Runner(recipe, identity, key, poller)
            (rebuilt if old is not None else added).append(target.org_id)
        fresh = [r for r in runners.values() if r.task is None]
        for runner, delay in zip(fresh, start_delays(len(fresh), cfg.poll_interval), strict=True):
            runner.start_delay = delay
        removed = tuple(org for org in self._runners if org not in runners)
        return Plan(cfg, runners, limiters, tuple(kept), tuple(rebuilt), tuple(added), removed)

    def apply(self, plan: Plan) -> list[asyncio.Task[None]]:
        """Swap `plan` in at once; returns the tasks stopped, for the caller to await."""
        stopped = [
            old.task
            for org, old in self._runners.items()
            if old.task is not None and plan.runners.get(org) is not old
        ]
        for limiter in plan.limiters.values():
            limiter.set_rate(plan.settings.max_requests_per_second)
        self.store.replace({org: runner.poller.state for org, runner in plan.runners.items()})
        self.store.fleet.shard = plan.settings.shard
        self.store.fleet.total_shards = plan.settings.total_shards
        self._runners = dict(plan.runners)
        self._limiters = dict(plan.limiters)
        for task in stopped:
            task.cancel()
        if self._running:
            self._start_all()
        return stopped

    def _start_all(self) -> None:
        for runner in self._runners.values():
            if runner.task is None:
                runner.task = asyncio.create_task(
                    runner.poller.run(runner.start_delay), name=f"poller {runner.poller.state.org}"
                )
                runner.task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # A poll loop never returns on its own; one that stopped without being cancelled is dead,
        # and /healthz must say so (the supervising task ends).
        if not task.cancelled() and self._dead is not None:
            self._dead.set()

    async def run(self) -> None:
        """Run every poller until cancelled; returns early if a poll loop dies."""
        self._dead = asyncio.Event()
        self._running = True
        self._start_all()
        try:
            await self._dead.wait()
            self.logger.error("poll_loop_stopped")
        finally:
            self._running = False
            tasks = [r.task for r in self._runners.values() if r.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for runner in self._runners.values():
                runner.task = None
