"""The running set of pollers, and how a new configuration replaces it.

`plan(settings)` builds everything a configuration needs (sharding, pollers, rate limiters)
without touching what runs, and may run in a worker thread; `apply(plan)` then swaps it in
synchronously, with no `await` in between, so a scrape sees either the old set of organisations
or the new one, never a mix.

An organisation whose target block and the exporter-wide poller settings are unchanged keeps
its poller as it is (task, state, cached token). One whose credentials, timing, aggregation or
service-level settings changed keeps its poll loop and its state (snapshot, every counter and
gauge): its running poller adopts the newly built parts, which apply from its next poll. Only
one whose query changed (filters, API URL) starts afresh; removed ones disappear; new ones
start polling.

Costs: the exporter-wide settings (1,000 service-level rules among them) are compared once per
plan, not once per organisation, and the service-level policy is compiled once and shared
(`exporter.fleet.policies`).
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
_NOT_POLLER |= {"web_enable_lifecycle"}
# Target settings that only say how to authenticate: changing them keeps the organisation's state.
_CREDENTIALS = {"api_key", "client_id", "client_secret", "access_token", "region", "token_url"}
_CREDENTIALS |= {"token_auth_method", "scope", "token_realm"}
# Exporter-wide settings whose change makes an organisation's counters mean something else
# (every work_type label becomes an id, or a name): its state starts afresh.
_MEANING = {"work_type_label"}
# Organisations named in one warning at most; the rest are counted.
_NAMED = 5


def _poller_settings(cfg: Settings) -> tuple[object, ...]:
    """The exporter-wide settings pollers are built from; equal = no poller needs rebuilding."""
    return tuple((k, v) for k, v in cfg if k not in _NOT_POLLER)


def _meaning(settings: tuple[object, ...] | None) -> tuple[object, ...]:
    """The settings among `settings` (as `_poller_settings` gives them) in `_MEANING`."""
    return tuple(s for s in settings or () if isinstance(s, tuple) and s[0] in _MEANING)


def _query(target: TargetSettings) -> tuple[object, ...]:
    """What an organisation's snapshot and counters are counts of; equal = its state carries over."""
    return tuple((k, v) for k, v in target if k not in _CREDENTIALS)


def start_delays(count: int, poll_interval: float) -> list[float]:
    """Spread the first polls of many organisations evenly over (at most) ten seconds."""
    window = min(poll_interval, 10.0)
    return [window * i / count for i in range(count)]


def _named(orgs: list[str]) -> str:
    more = f" and {len(orgs) - _NAMED} more" if len(orgs) > _NAMED else ""
    return ", ".join(orgs[:_NAMED]) + more


def rate_limit_warnings(cfg: Settings, sizes: dict[bytes, list[tuple[str, int]]]) -> list[str]:
    """Rate limits (max_requests_per_second) that cannot fit one poll of every organisation of
    their key.

    `sizes` maps a key's fingerprint to its organisations and the requests each needs per poll
    (its last poll's, else 1). Such a limit stretches every poll beyond poll_interval, or cuts
    it at the poll deadline (then it fails as rate_limited).
    """
    rate = cfg.max_requests_per_second
    if rate is None:
        return []
    fits = rate * cfg.poll_interval
    warnings = []
    for orgs in sizes.values():
        needed = sum(n for _, n in orgs)
        if needed > fits:
            names = _named([org for org, _ in orgs])
            warnings.append(
                f"max_requests_per_second={rate:g} allows {fits:g} requests per poll_interval "
                f"({cfg.poll_interval:g}s) for one API key, but its organisations ({names}) need "
                f"{needed} per poll: raise max_requests_per_second or poll_interval, or split them"
            )
    return warnings


@dataclass(slots=True)
class _Runner:
    target: TargetSettings
    key: bytes  # fingerprint of the API key: which rate limiter the poller shares
    poller: Poller
    start_delay: float = 0.0
    task: asyncio.Task[None] | None = None
    # A running organisation whose poller takes this one's parts when the plan is applied.
    replaces: _Runner | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A complete new state, built but not yet running."""

    settings: Settings
    runners: dict[str, _Runner]
    limiters: dict[bytes, RequestRateLimiter]
    poller_settings: tuple[object, ...] = ()
    kept: tuple[str, ...] = ()
    rebuilt: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    # Rate limits too low for one poll of their organisations (logged when applied).
    warnings: tuple[str, ...] = ()


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
    _poller_settings: tuple[object, ...] | None = None
    _running: bool = False
    _dead: asyncio.Event | None = None

    @property
    def pollers(self) -> list[Poller]:
        """The current pollers, in configuration order."""
        return [runner.poller for runner in self._runners.values()]

    def plan(self, cfg: Settings) -> Plan:
        """Build the state `cfg` asks for; raises ConfigError and changes nothing running.

        Touches nothing the event loop uses, so it may run in a worker thread.
        """
        targets = shards.owned(
            cfg.targets, cfg.shard, cfg.total_shards, lambda t: t.api_key.get_secret_value()
        )
        poller_settings = _poller_settings(cfg)
        same = poller_settings == self._poller_settings  # compared once, not per organisation
        same_meaning = _meaning(poller_settings) == _meaning(self._poller_settings)
        limiters: dict[bytes, RequestRateLimiter] = {}
        sizes: dict[bytes, list[tuple[str, int]]] = {}
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
            old = self._runners.get(target.org_id)
            last_size = old.poller.requests_last_poll if old is not None else None
            sizes.setdefault(key, []).append((target.org_id, last_size or 1))
            if old is not None and same and old.target == target:
                runners[target.org_id] = old
                kept.append(target.org_id)
                continue
            carried = (
                old
                if old is not None and same_meaning and _query(old.target) == _query(target)
                else None
            )
            state = carried.poller.state if carried is not None else OrgState(target.org_id)
            lane = limiters[key].lane(
                target.org_id, state.observe_rate_limit_wait, max_wait=cfg.stale_after
            )
            poller = self.build(target, cfg, state, lane)
            runners[target.org_id] = _Runner(target, key, poller, replaces=carried)
            (rebuilt if old is not None else added).append(target.org_id)
        fresh = [r for r in runners.values() if r.task is None and r.replaces is None]
        for runner, delay in zip(fresh, start_delays(len(fresh), cfg.poll_interval), strict=True):
            runner.start_delay = delay
        removed = tuple(org for org in self._runners if org not in runners)
        return Plan(
            cfg, runners, limiters, poller_settings, tuple(kept), tuple(rebuilt), tuple(added),
            removed, tuple(rate_limit_warnings(cfg, sizes)),
        )  # fmt: skip

    def apply(self, plan: Plan) -> list[asyncio.Task[None]]:
        """Swap `plan` in at once; returns the tasks stopped, for the caller to await."""
        for runner in plan.runners.values():
            old, runner.replaces = runner.replaces, None
            if old is not None and old.task is not None and not old.task.done():
                # The poll loop goes on: its poller takes the new parts from its next poll.
                old.poller.adopt(runner.poller)
                runner.poller, runner.task = old.poller, old.task
        running = {id(r.task) for r in plan.runners.values() if r.task is not None}
        stopped = [
            old.task
            for old in self._runners.values()
            if old.task is not None and id(old.task) not in running
        ]
        for limiter in plan.limiters.values():
            limiter.set_rate(plan.settings.max_requests_per_second)
        self.store.replace({org: runner.poller.state for org, runner in plan.runners.items()})
        self.store.fleet.shard = plan.settings.shard
        self.store.fleet.total_shards = plan.settings.total_shards
        self.store.configured = True
        self._runners = dict(plan.runners)
        self._limiters = dict(plan.limiters)
        self._poller_settings = plan.poller_settings
        for task in stopped:
            task.cancel()
        for warning in plan.warnings:
            self.logger.warning("rate_limit_too_low", problem=warning)
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
