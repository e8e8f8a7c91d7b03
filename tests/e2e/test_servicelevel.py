"""End to end: a 5-minute service-level warning reaches the pager before the breach.

The whole pipeline time-lapsed as in tests/e2e/test_alerting.py (30 times faster: poll, scrape
and evaluate every 1s, the rules' `for` and Alertmanager's waits divided by 30, so the example
routing's service-level route has `group_wait` and `group_interval` of 1s), with the exporter's
warning lapsed too: a 5-minute warning is 10s. Simulator (`sla` scenario at speed 3: a backlog
whose emails breach from 20s after the start on, spread over the work types, too few agents) →
exporter with the scenario's targets → Prometheus → Alertmanager with the example routing
generated from the same exporter configuration → webhook. Each work type's
`AlvariaEmailQueueServiceLevelAtRisk` must reach the pager before that work type's first breach,
as the simulator's ground truth (`/_sim/truth`) times it, and not before its warning window:
a second work type of the same organisation is not held back by the first one's group.

And a real Alertmanager with the routing generated from two calendars, one open around the
clock and one closed today: a service-level alert of the closed one opens a ticket, the open
one pages.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from exporter.simulator.scenarios import SLA_DEFAULT_TARGET, SLA_TARGETS, sla_target
from monitoring import alertmanager
from monitoring.config import CONFIG
from tests.e2e.test_alerting import (
    BIN,
    GROUP_WAIT,
    LAPSE,
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
# A 5-minute warning, time-lapsed like the rest of the pipeline.
WARNING_SECONDS = 300 / LAPSE
SPEED = 3


def service_levels_yaml(path: Path) -> Path:
    """The `sla` scenario's targets as the exporter's service_levels (names are regexes)."""
    rules = [{"match": {"work_type": re.escape(n)}, "target": t} for n, t in SLA_TARGETS.items()]
    config = {
        "service_level_target": SLA_DEFAULT_TARGET,
        "service_level_warning": f"{WARNING_SECONDS:g}s",
        "service_levels": rules,
    }
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Webhook, str, float]]:
    """Webhook, simulator, Alertmanager, exporter and Prometheus; the simulator's URL and when
    everything answered."""
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
                f"--speed={SPEED}",
                f"--listen-address={sim}",
            ],
            f"http://{sim}/_sim/truth",
        ),
        "alertmanager": (
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={alertmanager_config(tmp, hook_port, config)}",
                f"--storage.path={tmp / 'alertmanager'}",
                f"--web.listen-address={am}",
                "--cluster.listen-address=",
            ],
            f"http://{am}/-/ready",
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
        yield hook, f"http://{sim}", time.time()
    finally:
        for proc in reversed(procs):
            await _stop(proc)
        await runner.cleanup()


def _due(email: dict[str, Any]) -> float:
    return float(email["queued"]) + sla_target(email["workType"])


def first_breaches(truth: dict[str, Any]) -> dict[str, float]:
    """Per work type, when its first inbound email breached or will breach: waiting ones, and
    those picked up late."""
    dues: dict[str, float] = {}
    late = [p for p in truth["pickups"] if p["active"] >= _due(p)]
    for email in [*truth["waiting"], *late]:
        if email["emailType"] == "InboundEmail":
            dues[email["workType"]] = min(_due(email), dues.get(email["workType"], _due(email)))
    return dues


def first_at_risk(truth: dict[str, Any]) -> dict[str, float]:
    """Per work type, when an inbound email was first at risk: `warning` before its breach, if
    it was still waiting then (one picked up earlier never was)."""
    starts: dict[str, float] = {}
    for email in [*truth["waiting"], *truth["pickups"]]:
        start = _due(email) - WARNING_SECONDS
        if email["emailType"] == "InboundEmail" and email.get("active", start + 1) > start:
            starts[email["workType"]] = min(start, starts.get(email["workType"], start))
    return starts


async def test_each_work_type_is_warned_before_its_first_breach(
    run: tuple[Webhook, str, float],
) -> None:
    hook, sim, ready = run

    async def breached() -> dict[str, Any] | None:
        async with aiohttp.ClientSession() as session, session.get(f"{sim}/_sim/truth") as resp:
            truth: dict[str, Any] = await resp.json()
        # Breached a second ago: a page due before then has had its chance to arrive.
        past = {w: at for w, at in first_breaches(truth).items() if at < truth["now"] - 1}
        return {"truth": truth, "past": past} if len(past) >= 5 else None

    found = await eventually(breached, "five work types with a breach")
    truth, past = found["truth"], found["past"]
    at_risk_from = first_at_risk(truth)
    pages: dict[str, float] = {}
    for at, receiver, alert in hook.received:
        labels = alert["labels"]
        if alert["status"] == "firing" and labels["alertname"] == AT_RISK:
            assert receiver == "pager", "no calendar: service-level alerts page at any hour"
            assert labels["severity"] == "critical" and labels["org"] == "sla"
            assert labels["email_type"] == "InboundEmail"
            pages.setdefault(labels["work_type"], at)
    for work_type, breach in sorted(past.items(), key=lambda item: item[1]):
        assert work_type in pages, f"{work_type} breached at {breach:.1f} without a warning"
        arrived = pages[work_type]
        print(f"{work_type}: warned {breach - arrived:.1f}s before its breach")
        assert arrived < breach, f"{work_type} warned {arrived - breach:.1f}s after its breach"
        # Not before its warning window either (the exporter's at-risk count is exact).
        assert arrived >= at_risk_from[work_type], (work_type, arrived - at_risk_from[work_type])
    # Where the warning window opened once everything ran (not at the start), the delay is
    # the pipeline's: scrape + evaluation + for + group_interval, lapsed (runbooks.md,
    # "Effective warning"), plus HTTP round trips. A work type joining its organisation's group
    # is not held back until a long group_interval.
    delay = alertmanager.pipeline_delay(CONFIG) / LAPSE
    measured = {w: pages[w] - at_risk_from[w] for w in past if at_risk_from[w] > ready + 1}
    print(f"delay from the warning window to the page: {measured} (bound {delay:g}s + 3s)")
    assert len(measured) >= 2, (at_risk_from, ready)
    assert max(measured.values()) <= delay + 3, measured
    alert = next(a for _, _, a in hook.received if a["labels"]["alertname"] == AT_RISK)
    assert alert["annotations"]["runbook_url"].endswith("#alvariaemailqueueservicelevelatrisk")
    assert "the next breach is at " in alert["annotations"]["description"]


def calendars_yaml(path: Path) -> Path:
    """Two calendars: open around the clock, and closed today (holidays around today, UTC)."""
    today = datetime.now(UTC).date()
    every_day = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "00:00-24:00")
    config = {
        "service_levels": [
            {"match": {"work_type": "Open"}, "target": "1h", "calendar": "always"},
            {"match": {"work_type": "Closed"}, "target": "1h", "calendar": "closed-today"},
        ],
        "calendars": {
            "always": {"timezone": "UTC", "hours": every_day},
            "closed-today": {
                "timezone": "UTC",
                "hours": every_day,
                "holidays": [str(today + timedelta(days=d)) for d in (-1, 0, 1)],
            },
        },
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def test_a_closed_calendar_opens_a_ticket_instead_of_a_page(tmp_path: Path) -> None:
    """Real Alertmanager with the generated time intervals: the route of a calendar that is
    closed now is muted, its ticket route is not; an open calendar pages."""
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/{receiver}", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    am = f"127.0.0.1:{free_port()}"
    config = alertmanager_config(tmp_path, hook_port, calendars_yaml(tmp_path / "exporter.yml"))
    with (tmp_path / "alertmanager.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address={am}",
            "--cluster.listen-address=",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        async with aiohttp.ClientSession() as session:
            await eventually(functools.partial(_answers, session, f"http://{am}/-/ready"), "AM")
            alerts = [
                {
                    "labels": {
                        "alertname": AT_RISK,
                        "severity": "critical",
                        "job": "alvaria-emailqueue",
                        "org": "acme",
                        "work_type": work_type,
                        "email_type": "InboundEmail",
                    }
                }
                for work_type in ("Open", "Closed")
            ]
            async with session.post(f"http://{am}/api/v2/alerts", json=alerts) as resp:
                assert resp.status == 200, await resp.text()

            async def delivered() -> set[tuple[str, str]]:
                got = {(r, a["labels"]["work_type"]) for _, r, a in hook.received}
                return got if {("pager", "Open"), ("ticket", "Closed")} <= got else set()

            await eventually(delivered, "a page for Open and a ticket for Closed")
            # The muted page route would have flushed with the ticket route's group.
            await asyncio.sleep(2 * GROUP_WAIT)
            got = {(r, a["labels"]["work_type"]) for _, r, a in hook.received}
            assert got == {("pager", "Open"), ("ticket", "Closed")}
    finally:
        await _stop(proc)
        await runner.cleanup()
