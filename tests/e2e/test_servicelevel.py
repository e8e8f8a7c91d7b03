"""End to end: the service-level page comes *before* the breach.

Simulator (`sla` scenario, in real time: a backlog whose first email breaches a minute after the
start, too few agents) → exporter with the scenario's targets → Prometheus with the production
rules (generated as tests/e2e/test_alerting.py does, time-lapsed: `for: 1m` is 2 s) →
Alertmanager with the example configuration → webhook. `AlvariaEmailQueueServiceLevelAtRisk`
must reach the pager receiver before the first email breaches its target, as the simulator's
ground truth (`/_sim/truth`) tells it.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from exporter.simulator.scenarios import SLA_DEFAULT_TARGET, SLA_TARGETS, sla_target
from tests.e2e.test_alerting import (
    BIN,
    Webhook,
    _answers,
    _stop,
    alertmanager_config,
    binary,
    eventually,
    exporter_env,
    prometheus_config,
)
from tests.fakes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
AT_RISK = "AlvariaEmailQueueServiceLevelAtRisk"
WARNING = "5m"


def service_levels_yaml(path: Path) -> Path:
    """The `sla` scenario's targets as the exporter's service_levels (names are regexes)."""
    rules = [{"match": {"work_type": re.escape(n)}, "target": t} for n, t in SLA_TARGETS.items()]
    config = {
        "service_level_target": SLA_DEFAULT_TARGET,
        "service_level_warning": WARNING,
        "service_levels": rules,
    }
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Webhook, str]]:
    """Webhook, simulator, exporter, Prometheus and Alertmanager; the simulator's URL."""
    tmp = tmp_path_factory.mktemp("e2e-sla")
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/{receiver}", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    sim, exporter, prom, am = (f"127.0.0.1:{free_port()}" for _ in range(4))
    config = service_levels_yaml(tmp / "exporter.yml")
    commands = {
        "simulator": (
            [
                str(BIN / "alvaria-emailqueue-simulator"),
                "--scenario=sla",
                "--seed=5",
                "--org-id=sla",
                f"--listen-address={sim}",
            ],
            f"http://{sim}/_sim/truth",
        ),
        "exporter": ([str(BIN / "alvaria-emailqueue-exporter")], f"http://{exporter}/readyz"),
        "prometheus": (
            [
                binary("prometheus"),
                f"--config.file={prometheus_config(tmp, {'sla': exporter}, am)}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address={prom}",
            ],
            f"http://{prom}/-/ready",
        ),
        "alertmanager": (
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={alertmanager_config(tmp, hook_port)}",
                f"--storage.path={tmp / 'alertmanager'}",
                f"--web.listen-address={am}",
                "--cluster.listen-address=",
            ],
            f"http://{am}/-/ready",
        ),
    }
    env = exporter_env(exporter, sim, "sla", ALVARIA_CONFIG_FILE=str(config))
    procs: list[asyncio.subprocess.Process] = []
    try:
        async with aiohttp.ClientSession() as session:
            for name, (command, ready) in commands.items():
                with (tmp / f"{name}.log").open("wb") as log:
                    procs.append(
                        await asyncio.create_subprocess_exec(
                            *command, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
                        )
                    )
                await eventually(functools.partial(_answers, session, ready), f"{name} at {ready}")
        yield hook, f"http://{sim}"
    finally:
        for proc in reversed(procs):
            await _stop(proc)
        await runner.cleanup()


def first_breach(truth: dict[str, Any]) -> float:
    """When the first email breached or will breach: waiting ones, and those picked up late."""
    dues: list[float] = [w["queued"] + sla_target(w["workType"]) for w in truth["waiting"]]
    dues += [
        p["queued"] + sla_target(p["workType"])
        for p in truth["pickups"]
        if p["active"] - p["queued"] >= sla_target(p["workType"])
    ]
    return min(dues)


async def test_at_risk_pages_before_the_first_breach(run: tuple[Webhook, str]) -> None:
    hook, sim = run

    async def paged() -> list[tuple[float, dict[str, Any]]]:
        return hook.firing("sla", AT_RISK)

    arrived, alert = (await eventually(paged, f"{AT_RISK} at the webhook"))[0]
    async with aiohttp.ClientSession() as session, session.get(f"{sim}/_sim/truth") as resp:
        truth = await resp.json()
    breach = first_breach(truth)
    assert arrived < breach, f"paged {arrived - breach:.1f}s after the first breach"
    (receiver,) = {r for at, r, a in hook.received if a is alert}
    assert receiver == "pager"
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["org"] == "sla"
    assert alert["labels"]["work_type"] in {w["workType"] for w in truth["waiting"]}
    assert alert["annotations"]["runbook_url"].endswith("#alvariaemailqueueservicelevelatrisk")
    # Nothing had breached yet, so no breach page came first.
    assert not hook.firing("sla", "AlvariaEmailQueueServiceLevelBreached")
    print(f"{AT_RISK} arrived {breach - arrived:.1f}s before the first breach")
