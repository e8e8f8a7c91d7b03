"""End to end: simulator → exporter → Prometheus with the project's rules → Alertmanager → webhook.

The simulator runs the `agent_outage` scenario (no agents, a backlog up to six hours old), so
the production rules make AlvariaEmailQueueOldestEmailTooOld fire. Only the alerts' `for:` is
shortened, in a copy made from the production file at test time.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from tests.fakes import free_port
from tests.test_dashboards import dashboard_queries, substitute

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
BIN = Path(sys.executable).parent
DEADLINE_SECONDS = 60.0
SHORT_FOR = "2s"


def binary(*names: str) -> str:
    """The first of `names` found on PATH (Debian names the Alertmanager binary differently)."""
    for name in names:
        if path := shutil.which(name):
            return path
    raise AssertionError(f"{names[0]} is missing: run `make system-deps`")


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Await `check()` until it returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except (aiohttp.ClientError, OSError) as error:  # not listening yet
            last = error
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(0.5)  # poll interval, bounded by the deadline above
    raise AssertionError(f"timed out waiting for {what}; last result: {last!r}")


@dataclass
class Webhook:
    """Alertmanager notifications received, by receiver path."""

    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        """Record one notification."""
        self.received.setdefault(request.match_info["receiver"], []).append(await request.json())
        return web.Response()

    def alerts(self, receiver: str) -> list[dict[str, Any]]:
        """Every alert delivered to `receiver` so far."""
        return [alert for body in self.received.get(receiver, []) for alert in body["alerts"]]


@dataclass
class Stack:
    """Addresses of the running processes."""

    prometheus: str
    alertmanager: str
    webhook: Webhook
    logs: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def webhook_server() -> AsyncIterator[tuple[Webhook, int]]:
    """The receiver Alertmanager notifies, on a free loopback port."""
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/{receiver}", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield hook, port
    await runner.cleanup()


def alert_rules_with_short_for(path: Path) -> None:
    """The production alert rules with every `for:` shortened, so the test need not wait."""
    rules = yaml.safe_load((RULES_DIR / "alerts.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = SHORT_FOR
    path.write_text(yaml.safe_dump(rules))


def prometheus_config(tmp: Path, exporter: str, alertmanager: str) -> Path:
    """The example prometheus.yml, pointed at the test's processes and evaluating every second."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    alerts = tmp / "alerts.rules.yml"
    alert_rules_with_short_for(alerts)
    config["rule_files"] = [str(RULES_DIR / "recording.rules.yml"), str(alerts)]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [exporter]}]
    job["scrape_timeout"] = "1s"
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def alertmanager_config(tmp: Path, webhook_port: int) -> Path:
    """The example alertmanager.yml, its webhooks sent to the test and its waits shortened."""
    config = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    routes = [config["route"]]
    while routes:  # every route that sets its own waits, the sub-route of these alerts included
        route = routes.pop()
        route |= {"group_wait": "1s", "group_interval": "1s"}
        routes += route.get("routes", [])
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{webhook_port}/{receiver['name']}"
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, webhook_server: tuple[Webhook, int]
) -> AsyncIterator[Stack]:
    """Simulator, exporter, Prometheus and Alertmanager, stopped afterwards."""
    hook, webhook_port = webhook_server
    tmp = tmp_path_factory.mktemp("e2e")
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
        # The overview's agent workload panel needs it; off by default for cardinality.
        "ALVARIA_AGENT_METRICS": "true",
    }
    commands = {
        "simulator": [
            str(BIN / "alvaria-emailqueue-simulator"),
            "--scenario=agent_outage",
            "--seed=7",
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
            f"--config.file={alertmanager_config(tmp, webhook_port)}",
            f"--storage.path={tmp / 'alertmanager'}",
            f"--web.listen-address={am}",
            "--cluster.listen-address=",
        ],
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
                ready = {
                    "simulator": f"http://{sim}/",
                    "exporter": f"http://{exporter}/readyz",
                    "prometheus": f"http://{prom}/-/ready",
                    "alertmanager": f"http://{am}/-/ready",
                }[name]
                await eventually(functools.partial(_answers, session, ready), f"{name} at {ready}")
        yield Stack(f"http://{prom}", f"http://{am}", hook, tmp)
    finally:
        for proc in reversed(procs):
            await _stop(proc)


async def _answers(session: aiohttp.ClientSession, url: str) -> bool:
    """Whether `url` answers without a server error (the simulator's `/` may be a 404)."""
    async with session.get(url) as resp:
        return resp.status < 500


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Terminate a process, kill it if it does not exit promptly."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _query(session: aiohttp.ClientSession, prometheus: str, expr: str) -> list[Any]:
    """The result of an instant query; fails on a query error."""
    async with session.get(f"{prometheus}/api/v1/query", params={"query": expr}) as resp:
        body = await resp.json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def _as_instant_query(expr: str) -> str:
    """A dashboard query as Prometheus can run it: variables set to All, label_values as a query."""
    expr = substitute(expr)
    if match := re.fullmatch(r"label_values\((.*), *(\w+)\)", expr):
        selector, label = match.groups()
        return f"group by ({label}) ({selector})"
    return expr


async def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    empty = {where: _as_instant_query(expr) for where, expr in dashboard_queries()}
    async with aiohttp.ClientSession() as session:

        async def all_answered() -> bool:
            for where, expr in list(empty.items()):
                if await _query(session, stack.prometheus, expr):
                    del empty[where]
            return not empty

        try:
            await eventually(all_answered, "every dashboard query to return data")
        except AssertionError:
            raise AssertionError(f"queries without data: {empty}") from None


async def test_the_age_alert_reaches_the_pager_receiver(stack: Stack) -> None:
    def delivered() -> list[dict[str, Any]]:
        return [
            alert
            for alert in stack.webhook.alerts("pager")
            if alert["labels"]["alertname"] == "AlvariaEmailQueueOldestEmailTooOld"
        ]

    async def arrived() -> list[dict[str, Any]]:
        return delivered()

    alerts = await eventually(arrived, "AlvariaEmailQueueOldestEmailTooOld at the webhook")
    alert = alerts[0]
    assert alert["status"] == "firing"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["org"] == "demo"
    assert alert["labels"]["job"] == "alvaria-emailqueue"
    assert alert["labels"]["work_type"]
    assert alert["annotations"]["runbook_url"].endswith("#alvariaemailqueueoldestemailtooold")
    assert "longer than its service level" in alert["annotations"]["description"]
    # Nothing about the exporter itself went wrong, so nothing inhibits or accompanies it.
    exporter_alerts = {"AlvariaEmailQueueExporterDown", "AlvariaEmailQueuePollsFailing"}
    received = {
        a["labels"]["alertname"] for r in stack.webhook.received for a in stack.webhook.alerts(r)
    }
    assert not received & exporter_alerts
