"""The fleet's plan/apply: what a new configuration keeps, rebuilds, adds and removes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest
from pydantic import SecretStr

from exporter.app.wiring import aggregation_options
from exporter.domain.errors import ConfigError
from exporter.fleet.pollers import Fleet
from exporter.polling.poller import Poller, PollTiming
from exporter.polling.store import OrgState, Store
from exporter.settings import Settings, TargetSettings
from exporter.upstream.client import Page
from exporter.upstream.ratelimit import OrgLane
from tests.fakes import NoAuth, until


class Empty:
    """A page source with an empty queue that counts its polls."""

    def __init__(self) -> None:
        self.polls = 0

    async def pages(self) -> AsyncGenerator[Page, None]:
        self.polls += 1
        yield Page(0, 0, [], total_items=0)


class Builder:
    """Builds real pollers over empty queues and remembers what it was asked for."""

    def __init__(self) -> None:
        self.built: list[str] = []
        self.limiters: dict[str, OrgLane | None] = {}
        self.fail_for: str | None = None

    def __call__(
        self, target: TargetSettings, cfg: Settings, state: OrgState, limiter: OrgLane | None
    ) -> Poller:
        if target.org_id == self.fail_for:
            raise ConfigError("client_id", "test", "refused")
        self.built.append(target.org_id)
        self.limiters[target.org_id] = limiter
        timing = PollTiming(poll_interval=cfg.poll_interval, stale_after=cfg.stale_after)
        options = aggregation_options(cfg, target)
        return Poller(state, Empty(), NoAuth(), options=options, timing=timing)


def target(org: str, key: str = "k", secret: str = "s", **extra: object) -> TargetSettings:
    return TargetSettings.model_validate(
        {
            "org_id": org,
            "api_key": SecretStr(key),
            "client_id": "c",
            "client_secret": SecretStr(secret),
            **extra,
        }
    )


def settings(*targets: TargetSettings, **extra: object) -> Settings:
    return Settings.model_validate({"targets": targets, "poll_interval": 0.05, **extra})


@pytest.fixture
def fleet() -> tuple[Fleet, Builder]:
    build = Builder()
    return Fleet(Store([]), build), build


def test_first_plan_builds_every_target_in_order(fleet: tuple[Fleet, Builder]) -> None:
    f, build = fleet
    f.apply(f.plan(settings(target("a"), target("b"), target("c"))))
    assert list(f.store.orgs) == ["a", "b", "c"] and build.built == ["a", "b", "c"]


def test_unchanged_targets_keep_poller_and_state(fleet: tuple[Fleet, Builder]) -> None:
    f, build = fleet
    cfg = settings(target("a"), target("b"))
    f.apply(f.plan(cfg))
    pollers, states = f.pollers, dict(f.store.orgs)
    states["a"].polls = 7
    plan = f.plan(settings(target("a"), target("b")))
    assert plan.kept == ("a", "b") and not plan.rebuilt and not plan.added
    f.apply(plan)
    assert f.pollers == pollers and f.store.orgs["a"] is states["a"]
    assert build.built == ["a", "b"]


def test_rotated_secret_rebuilds_the_poller_but_keeps_the_state(
    fleet: tuple[Fleet, Builder],
) -> None:
    f, _ = fleet
    f.apply(f.plan(settings(target("a"), target("b"))))
    old_poller, old_state = f.pollers[0], f.store.orgs["a"]
    plan = f.plan(settings(target("a", secret="rotated"), target("b")))
    assert plan.rebuilt == ("a",) and plan.kept == ("b",)
    f.apply(plan)
    assert f.pollers[0] is not old_poller and f.store.orgs["a"] is old_state


def test_changed_query_starts_the_organisation_afresh(fleet: tuple[Fleet, Builder]) -> None:
    f, _ = fleet
    f.apply(f.plan(settings(target("a"))))
    old_state = f.store.orgs["a"]
    f.apply(f.plan(settings(target("a", states=("Queued",)))))
    assert f.store.orgs["a"] is not old_state


def test_denying_kpis_keeps_the_state_a_new_work_type_label_does_not(
    fleet: tuple[Fleet, Builder],
) -> None:
    f, _ = fleet
    f.apply(f.plan(settings(target("a"))))
    old_state = f.store.orgs["a"]
    plan = f.plan(settings(target("a"), metric_denylist=("handle",), thread_memory=60.0))
    assert plan.rebuilt == ("a",)  # what is measured changed, not what it means
    f.apply(plan)
    assert f.store.orgs["a"] is old_state
    f.apply(f.plan(settings(target("a"), metric_denylist=("handle",), work_type_label="id")))
    assert f.store.orgs["a"] is not old_state  # every work_type label means something else


def test_added_and_removed(fleet: tuple[Fleet, Builder]) -> None:
    f, _ = fleet
    f.apply(f.plan(settings(target("a"), target("b"))))
    plan = f.plan(settings(target("b"), target("c")))
    assert (plan.added, plan.removed, plan.kept) == (("c",), ("a",), ("b",))
    version = f.store.version
    f.apply(plan)
    assert list(f.store.orgs) == ["b", "c"]
    assert f.store.version > version, "cached renders must notice the change"


def test_a_failing_plan_changes_nothing(fleet: tuple[Fleet, Builder]) -> None:
    f, build = fleet
    f.apply(f.plan(settings(target("a"))))
    before = dict(f.store.orgs)
    build.fail_for = "b"
    with pytest.raises(ConfigError):
        f.plan(settings(target("a", secret="new"), target("b")))
    assert f.store.orgs == before


def test_shard_filters_and_keys_share_one_rate_limiter(fleet: tuple[Fleet, Builder]) -> None:
    f, build = fleet
    targets = [target(f"o{i}", key=f"key{i // 2}") for i in range(12)]
    owned: list[str] = []
    for shard in range(3):
        g = Fleet(Store([]), build)
        g.apply(g.plan(settings(*targets, shard=shard, total_shards=3)))
        assert g.store.fleet.shard == shard and g.store.fleet.total_shards == 3
        owned += list(g.store.orgs)
    assert sorted(owned) == sorted(t.org_id for t in targets)
    f.apply(f.plan(settings(*targets, max_requests_per_second=5)))
    shared = {id(vars(build.limiters[f"o{i}"])["_limiter"]) for i in (0, 1)}
    assert len(shared) == 1, "two organisations of one key share one rate limiter"
    other = id(vars(build.limiters["o2"])["_limiter"])
    assert other not in shared


async def test_running_fleet_stops_removed_and_starts_added(
    fleet: tuple[Fleet, Builder],
) -> None:
    f, _ = fleet
    f.apply(f.plan(settings(target("a"), target("b"))))
    runner = asyncio.create_task(f.run())
    await asyncio.sleep(0.2)
    a_polls = f.store.orgs["a"].polls
    assert a_polls >= 2
    stopped = f.apply(f.plan(settings(target("a"), target("c"))))
    await asyncio.gather(*stopped, return_exceptions=True)
    assert len(stopped) == 1 and stopped[0].cancelled()
    await asyncio.sleep(0.2)
    assert f.store.orgs["c"].polls >= 2
    assert f.store.orgs["a"].polls > a_polls, "a kept polling, its count kept"
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


async def test_changed_aggregation_and_service_levels_keep_the_poll_loop_and_counters(
    fleet: tuple[Fleet, Builder],
) -> None:
    f, _ = fleet
    f.apply(f.plan(settings(target("a"), target("b"))))
    runner = asyncio.create_task(f.run())
    try:
        await until(lambda: min(s.polls for s in f.store.orgs.values()) >= 2)
        before = {org: (state, state.polls) for org, state in f.store.orgs.items()}
        pollers = f.pollers
        rules = [{"match": {"work_type": "VIP.*"}, "target": 600.0}]
        new = settings(
            target("a"), target("b"), waiting_states=("Queued",), service_level_target=7200,
            service_levels=rules, max_series=5000,
        )  # fmt: skip
        plan = f.plan(new)
        assert plan.rebuilt == ("a", "b")
        stopped = f.apply(plan)
        assert stopped == [], "no poll loop is cancelled"
        assert f.pollers == pollers, "the running pollers adopted the new parts"
        options = f.pollers[0]._options
        assert options.waiting_states == {"Queued"}
        assert options.service_levels.level(("InboundEmail", "VIP 1")).target == 600.0
        await until(lambda: f.store.orgs["a"].polls > before["a"][1])
        for org, (state, polls) in before.items():
            assert f.store.orgs[org] is state and state.polls >= polls
        assert f.store.ready
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


def test_one_policy_is_compiled_per_configuration_and_shared(fleet: tuple[Fleet, Builder]) -> None:
    f, _ = fleet
    rules = [{"match": {"work_type": f"wt{i}"}, "target": 60.0 + i} for i in range(1000)]
    targets = [target(f"o{i}") for i in range(20)]
    f.apply(f.plan(settings(*targets, service_levels=rules)))
    policies = {id(p._options.service_levels) for p in f.pollers}
    assert len(policies) == 1, "every organisation shares one compiled rule set"
    # A reload with equal service-level settings (new objects) and another poll interval.
    f.apply(f.plan(settings(*targets, service_levels=rules, poll_interval=0.1)))
    assert {id(p._options.service_levels) for p in f.pollers} == policies


def test_a_budget_too_small_for_one_poll_is_named(fleet: tuple[Fleet, Builder]) -> None:
    f, _ = fleet
    targets = [target(f"o{i}", key="shared") for i in range(7)] + [target("alone", key="own")]
    plan = f.plan(settings(*targets, poll_interval=1.0, max_requests_per_second=2.0))
    assert len(plan.warnings) == 1
    assert "o0, o1, o2, o3, o4 and 2 more" in plan.warnings[0] and "need 7" in plan.warnings[0]
    assert "alone" not in plan.warnings[0] and "shared" not in plan.warnings[0]
    f.apply(plan)
    for poller in f.pollers[:7]:
        poller._last_requests = 3  # as after polls of three requests each
    again = f.plan(settings(*targets, poll_interval=1.0, max_requests_per_second=20.0))
    assert "need 21" in again.warnings[0], "the last polls' sizes count"
    assert not f.plan(settings(*targets, poll_interval=1.0)).warnings
