"""End to end: the service-level page comes *before* the breach.

Simulator (`sla` scenario: a backlog whose first email breaches a minute after the start, too
few agents) → exporter with the scenario's targets → Prometheus with the production rules (only
their `for:` shortened) → Alertmanager → webhook. `AlvariaEmailQueueServiceLevelAtRisk` must
reach the pager receiver before the first email breaches its target, as the simulator's ground
truth (`/_sim/truth`) tells it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from exporter.simulator.scenarios import SLA_DEFAULT_TARGET, SLA_TARGETS, sla_target
from tests.fakes import free_port
from tests.test_e2e_alerting import (
    BIN,
    _answers,
    _stop,
    alertmanager_config,
    binary,
    eventually,
    prometheus_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
AT_RISK = "AlvariaEmailQueueServiceLevelAtRisk"
WARNING = "5m"


class Receiver:
    """Alertmanager notifications, each with the wall-clock time it arrived."""

    def __init__(self) -> None:
        self.alerts: list[tuple[float, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        arrived = time.time()
        body = await request.json()
        receiver = request.match_info["receiver"]
        self.alerts += [(arrived, {**a, "receiver": receiver}) for a in body["alerts"]]
        return web.Response()


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
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Receiver, str]]:
    """Webhook, simulator, exporter, Prometheus and Alertmanager; the simulator's URL."""
    tmp = tmp_path_factory.mktemp("e2e-sla")
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{receiver}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    sim, exporter, prom, am = (f"127.0.0.1:{free_port()}" for _ in range(4))
    env = os.environ | {
        "ALVARIA_ORG_ID": "demo",
        "ALVARIA_API_KEY": "demo",
        "ALVARIA_CLIENT_ID": "demo",
        "ALVARIA_CLIENT_SECRET": "demo",
        "ALVARIA_API_URL": f"http://{sim}",
        "ALVARIA_TOKEN_URL": f"http://{sim}/tokenservice/oauth2/access_token",
        "ALVARIA_POLL_INTERVAL": "1s",
        "ALVARIA_LISTEN_ADDRESS": exporter,
        "ALVARIA_CONFIG_FILE": str(service_levels_yaml(tmp / "exporter.yml")),
    }
    commands = {
        "simulator": [
            str(BIN / "alvaria-emailqueue-simulator"),
            "--scenario=sla",
            "--seed=5",
            f"--listen-address={sim}",
        ],
        "exporter": [str(BIN / "alvaria-emailqueue-exporter")],
        "prometheus": [
            binary("prometheus"),
            f"--config.file={prometheus_config(tmp, exporter, am)}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address={prom}",
        ],
        "alertmanager": [
            binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={alertmanager_config(tmp, hook_port)}",
            f"--storage.path={tmp / 'alertmanager'}",
            f"--web.listen-address={am}",
            "--cluster.listen-address=",
        ],
    }
    ready = {
        "simulator": f"http://{sim}/_sim/truth",
        "exporter": f"http://{exporter}/readyz",
        "prometheus": f"http://{prom}/-/ready",
        "alertmanager": f"http://{am}/-/ready",
    }
    procs: list[asyncio.subprocess.Process] = []
    try:
        async with aiohttp.ClientSession() as session:
            for name, command in commands.items():
                with (tmp / f"{name}.log").open("wb") as log:
                    procs.append(
                        await asyncio.create_subprocess_exec(
                            *command, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
                        )
                    )
                check = functools.partial(_answers, session, ready[name])
                await eventually(check, f"{name} at {ready[name]}")
        yield receiver, f"http://{sim}"
    finally:
        for proc in reversed(procs):
            await _stop(proc)
        await runner.cleanup()


def first_breach(truth: dict[str, Any]) -> float:
    """When the first email breached or will breach: waiting ones, and those picked up late."""
    dues = [w["queued"] + sla_target(w["workType"]) for w in truth["waiting"]]
    dues += [
        p["queued"] + sla_target(p["workType"])
        for p in truth["pickups"]
        if p["active"] - p["queued"] >= sla_target(p["workType"])
    ]
    return min(dues)


async def test_at_risk_pages_before_the_first_breach(run: tuple[Receiver, str]) -> None:
    receiver, sim = run

    async def paged() -> list[tuple[float, dict[str, Any]]]:
        return [(t, a) for t, a in receiver.alerts if a["labels"]["alertname"] == AT_RISK]

    arrived, alert = (await eventually(paged, f"{AT_RISK} at the webhook"))[0]
    async with aiohttp.ClientSession() as session, session.get(f"{sim}/_sim/truth") as resp:
        truth = await resp.json()
    breach = first_breach(truth)
    assert arrived < breach, f"paged {arrived - breach:.1f}s after the first breach"
    assert alert["receiver"] == "pager" and alert["status"] == "firing"
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["org"] == "demo"
    assert alert["labels"]["work_type"] in {w["workType"] for w in truth["waiting"]}
    assert alert["annotations"]["runbook_url"].endswith("#alvariaemailqueueservicelevelatrisk")
    # Nothing had breached yet, so no breach page came first.
    assert not [a for t, a in receiver.alerts if "Breached" in a["labels"]["alertname"]]
    print(f"{AT_RISK} arrived {breach - arrived:.1f}s before the first breach")
