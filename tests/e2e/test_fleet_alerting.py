"""End to end: a fleet loses a replica; the alerts name what is lost and silence nothing else.

The time-lapsed world of tests/e2e/test_alerting.py (30 times faster: poll, scrape and evaluate
every 1s; the rules' `for`, windows and Alertmanager's waits divided by 30), with one
multi-organisation simulator and three exporters:

- job `alvaria-emailqueue-fleet`: two shards of one configuration (six organisations, each its
  own API key, split between them by the exporter's hashing). Shard 1 is killed and stays in
  Prometheus' targets: its organisations must be named (OrganisationLost) within 4 minutes
  (8 lapsed seconds) and none of shard 0's; and shard 0's service-level alerts, raised after
  the death (a reload puts every waiting email at risk), must still reach the pager although
  ExporterDown fires for the job.
- job `alvaria-emailqueue-gone`: one exporter (two organisations) found through file-based
  service discovery, then removed from it while it keeps running (the usual Kubernetes case):
  no target, so no ExporterDown; its organisations must be named all the same.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from monitoring.durations import seconds
from tests.e2e.test_alerting import (
    BIN,
    CONFIG_E2E,
    EVALUATION,
    GROUP_WAIT,
    LAPSE,
    ROOT,
    Webhook,
    _answers,
    _stop,
    alertmanager_config,
    binary,
    eventually,
    write_rules,
)
from tests.fakes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LOST = "AlvariaEmailQueueOrganisationLost"
AT_RISK = "AlvariaEmailQueueServiceLevelAtRisk"
FLEET = "alvaria-emailqueue-fleet"
GONE = "alvaria-emailqueue-gone"
SECRET = "fleet-secret"
FLEET_ORGS = [f"org-{i:04d}" for i in range(1, 7)]
GONE_ORGS = ["org-0007", "org-0008"]
# Within 4 minutes of the loss (the bound), lapsed; plus the fixed costs of a busy
# machine (process scheduling, HTTP round trips), which a time lapse magnifies 30 times.
WITHIN = 240 / LAPSE
SLACK = 3.0
# Nothing at risk at first (a 0s warning); after the reload every waiting email is.
QUIET = {"service_level_target": "3650d", "service_level_warning": "0s"}
ALL_AT_RISK = {"service_level_target": "3650d", "service_level_warning": "3650d"}


@dataclass
class Fleet:
    """The running world: addresses, processes and files the tests change."""

    prometheus: str
    alertmanager: str
    webhook: Webhook
    procs: dict[str, asyncio.subprocess.Process]
    exporters: dict[str, str]  # name -> address, the `instance` label
    configs: dict[str, Path]
    discovery: Path


def _exporter_config(path: Path, orgs: list[str], sim: str, secret: Path, **extra: str) -> Path:
    targets = [
        {
            "org_id": org,
            "api_key": f"key-{org}",
            "client_id": "demo",
            "client_secret_file": str(secret),
            "api_url": f"http://{sim}",
            "token_url": f"http://{sim}/tokenservice/oauth2/access_token",
        }
        for org in orgs
    ]
    config = {"poll_interval": "1s", "log_format": "json", **extra, "targets": targets}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _prometheus_config(tmp: Path, fleet: list[str], discovery: Path, am: str) -> Path:
    """The example prometheus.yml with two jobs: a static one and a file-discovered one."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = write_rules(tmp)
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [am]}]
    (job,) = config["scrape_configs"]
    config["scrape_configs"] = [
        job | {"job_name": FLEET, "scrape_timeout": "1s", "static_configs": [{"targets": fleet}]},
        {
            "job_name": GONE,
            "scrape_timeout": "1s",
            "file_sd_configs": [{"files": [str(discovery)], "refresh_interval": "1s"}],
        },
    ]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _simulator(address: str) -> list[str]:
    """Eight organisations with static queues (cheap on a busy machine), each its own API key."""
    return [
        str(BIN / "alvaria-emailqueue-simulator"),
        "--scenario=large",
        "--emails=40",
        "--orgs=8",
        "--api-key-per-org",
        f"--client-secret={SECRET}",
        f"--listen-address={address}",
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fleet]:
    """Webhook, simulator, Alertmanager, three exporters and Prometheus, stopped afterwards."""
    tmp = tmp_path_factory.mktemp("e2e-fleet")
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/{receiver}", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    sim, prom, am = (f"127.0.0.1:{free_port()}" for _ in range(3))
    exporters = {name: f"127.0.0.1:{free_port()}" for name in ("shard-0", "shard-1", "gone")}
    secret = tmp / "secret"
    secret.write_text(SECRET)
    configs = {
        name: _exporter_config(tmp / f"{name}.yml", orgs, sim, secret, **QUIET)
        for name, orgs in (("shard-0", FLEET_ORGS), ("shard-1", FLEET_ORGS), ("gone", GONE_ORGS))
    }
    discovery = tmp / "discovery.json"
    discovery.write_text(json.dumps([{"targets": [exporters["gone"]]}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
    exporter = [str(BIN / "alvaria-emailqueue-exporter")]
    shards = {"shard-0": ["--shard=0", "--total-shards=2"], "shard-1": ["--shard=1", "--total-shards=2"]}  # fmt: skip
    commands: dict[str, tuple[list[str], dict[str, str], str]] = {
        "simulator": (_simulator(sim), env, f"{sim}/"),
        "alertmanager": (
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={alertmanager_config(tmp, hook_port)}",
                f"--storage.path={tmp / 'alertmanager'}",
                f"--web.listen-address={am}",
                "--cluster.listen-address=",
            ],
            env,
            f"{am}/-/ready",
        ),
        **{
            name: (
                [*exporter, *shards.get(name, []), f"--listen-address={address}"],
                env | {"ALVARIA_CONFIG_FILE": str(configs[name])},
                f"{address}/readyz",
            )
            for name, address in exporters.items()
        },
        "prometheus": (
            [
                binary("prometheus"),
                f"--config.file={_prometheus_config(tmp, [exporters['shard-0'], exporters['shard-1']], discovery, am)}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address={prom}",
            ],
            env,
            f"{prom}/-/ready",
        ),
    }
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for name, (command, environ, ready) in commands.items():
                with (tmp / f"{name}.log").open("wb") as log:
                    procs[name] = await asyncio.create_subprocess_exec(
                        *command, env=environ, stdout=log, stderr=asyncio.subprocess.STDOUT
                    )
                url = f"http://{ready}"
                await eventually(functools.partial(_answers, session, url), f"{name} at {url}")
        yield Fleet(f"http://{prom}", f"http://{am}", hook, procs, exporters, configs, discovery)
    finally:
        for proc in reversed(procs.values()):
            await _stop(proc)
        await runner.cleanup()


async def _query(fleet: Fleet, expr: str) -> list[Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fleet.prometheus}/api/v1/query", params={"query": expr}) as resp,
    ):
        body = await resp.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


async def _orgs_by_instance(fleet: Fleet, job: str, count: int) -> dict[str, set[str]]:
    """Wait until Prometheus has `count` organisations of `job`; which instance polls which."""

    async def exported() -> list[Any] | None:
        found = await _query(fleet, f'alvaria_emailqueue_up{{job="{job}"}}')
        return found if len(found) == count else None

    by_instance: dict[str, set[str]] = {}
    for series in await eventually(exported, f"{count} organisations of {job}"):
        by_instance.setdefault(series["metric"]["instance"], set()).add(series["metric"]["org"])
    return by_instance


def _lost(fleet: Fleet, job: str) -> dict[str, tuple[float, dict[str, Any]]]:
    """The first OrganisationLost notification of each organisation of `job`."""
    first: dict[str, tuple[float, dict[str, Any]]] = {}
    for at, _, alert in fleet.webhook.received:
        labels = alert["labels"]
        if alert["status"] == "firing" and labels["alertname"] == LOST and labels["job"] == job:
            first.setdefault(labels["org"], (at, alert))
    return first


async def _all_lost(fleet: Fleet, job: str, orgs: set[str]) -> dict[str, tuple[float, Any]]:
    async def named() -> dict[str, tuple[float, Any]] | None:
        lost = _lost(fleet, job)
        return lost if orgs <= lost.keys() else None

    found: dict[str, tuple[float, Any]] = await eventually(named, f"{LOST} for {sorted(orgs)}")
    return found


def _bound() -> float:
    """Lapsed: a scrape, an evaluation, `for`, an evaluation, group_wait (runbooks.md)."""
    return 1 + 2 * EVALUATION + seconds(CONFIG_E2E.alert("OrganisationLost").for_) + GROUP_WAIT


# Prometheus' discovery manager passes target changes on at most every 5 seconds (real time,
# not lapsed: in production it is 5s of the 4 minutes).
DISCOVERY_UPDATE = 5.0


async def test_a_dead_shard_names_its_organisations_and_silences_only_them(fleet: Fleet) -> None:
    by_instance = await _orgs_by_instance(fleet, FLEET, len(FLEET_ORGS))
    assert len(by_instance) == 2, "the hashing gives each shard some organisations"
    shard_1 = fleet.exporters["shard-1"]
    dead = by_instance.pop(shard_1)
    (alive,) = by_instance.values()
    fleet.procs["shard-1"].kill()
    await fleet.procs["shard-1"].wait()
    killed_at = time.time()
    lost = await _all_lost(fleet, FLEET, dead)
    for org, (at, alert) in sorted(lost.items()):
        took = at - killed_at
        print(f"{LOST} {org}: {took:.1f}s (x{LAPSE} = {took * LAPSE / 60:.1f}m) after the kill")
        assert 0 < took <= min(WITHIN, _bound()) + SLACK, (org, took, _bound())
        description = alert["annotations"]["description"]
        assert f"by {shard_1} (shard 1) and now by no replica" in description, description
        assert ", ".join(sorted(dead)) in description
    assert lost.keys() == dead, "the healthy shard's organisations are not lost"
    assert all(at > killed_at for at, _ in _lost(fleet, FLEET).values())

    # ExporterDown fires for the dead replica (it is still a target) ...
    down = (
        f'ALERTS{{alertname="AlvariaEmailQueueExporterDown", alertstate="firing", job="{FLEET}"}}'
    )
    await eventually(functools.partial(_query, fleet, down), "ExporterDown for the dead shard")
    # ... and the other shard's service-level alerts still page: every waiting email at risk.
    config = yaml.safe_load(fleet.configs["shard-0"].read_text())
    fleet.configs["shard-0"].write_text(yaml.safe_dump(config | ALL_AT_RISK))
    fleet.procs["shard-0"].send_signal(signal.SIGHUP)
    reloaded_at = time.time()

    async def paged() -> set[str]:
        return {
            alert["labels"]["org"]
            for at, receiver, alert in fleet.webhook.received
            if at > reloaded_at
            and receiver == "pager"
            and alert["status"] == "firing"
            and alert["labels"]["alertname"] == AT_RISK
        }

    await eventually(paged, f"{AT_RISK} of the healthy shard at the pager")
    assert await paged() <= alive
    # Alertmanager holds them active and not inhibited, while ExporterDown still fires.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fleet.alertmanager}/api/v2/alerts") as resp,
    ):
        alerts = await resp.json()
    names = {a["labels"]["alertname"] for a in alerts}
    assert "AlvariaEmailQueueExporterDown" in names
    at_risk = [a for a in alerts if a["labels"]["alertname"] == AT_RISK]
    assert at_risk and all(a["status"]["inhibitedBy"] == [] for a in at_risk), at_risk
    assert _lost(fleet, FLEET).keys() == dead, "the reload lost nothing"


async def test_a_replica_removed_from_discovery_names_its_organisations(fleet: Fleet) -> None:
    by_instance = await _orgs_by_instance(fleet, GONE, len(GONE_ORGS))
    (instance,) = by_instance
    fleet.discovery.write_text("[]")
    removed_at = time.time()
    lost = await _all_lost(fleet, GONE, set(GONE_ORGS))
    for org, (at, alert) in sorted(lost.items()):
        took = at - removed_at
        print(f"{LOST} {org}: {took:.1f}s after removal (5s of it discovery's batching)")
        assert 0 < took <= min(WITHIN, _bound()) + DISCOVERY_UPDATE + SLACK, (org, took)
        assert f"by {instance} (shard 0)" in alert["annotations"]["description"]
    assert fleet.procs["gone"].returncode is None, "the exporter itself still runs"
    # No target, so nothing else says so: no ExporterDown for this job.
    down = f'ALERTS{{alertname="AlvariaEmailQueueExporterDown", job="{GONE}"}}'
    assert await _query(fleet, down) == []
