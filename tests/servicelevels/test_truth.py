"""The exporter's service-level numbers against the simulator's ground truth (`sla` scenario).

The production pipeline (main.build_poller / build_registry) polls the simulator over HTTP;
simulator and exporter share one hand-moved clock, so every poll and every scrape happens at a
known instant. The truth comes from `GET /_sim/truth` (the model's own record of pickups and
waiting emails). Targets on a business-hours clock are judged by a minute-by-minute reference
written here, not by the exporter's calendar code.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from exporter.app.wiring import build_poller, build_registry
from exporter.polling.poller import Poller
from exporter.polling.store import Store
from exporter.settings import Settings
from exporter.settings.servicelevels import (
    CalendarSettings,
    ServiceLevelMatch,
    ServiceLevelRuleSettings,
)
from exporter.simulator import SimulatorConfig
from exporter.simulator.app import create_app
from exporter.simulator.scenarios import SLA_DEFAULT_TARGET, SLA_TARGETS, sla_target
from tests.fake_alvaria import target_for
from tests.fakes import Clock
from tests.servicelevels.test_calendar import wall_clock_open

ORG = "demo"
WARNING = 240.0
POLL = 10.0
# Friday 27 November 2026, 17:40 in London: the office below closes twenty minutes in.
FRIDAY_EVENING = datetime(2026, 11, 27, 17, 40, tzinfo=UTC).timestamp()
OFFICE = CalendarSettings(
    timezone="Europe/London",
    hours={d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")},
)
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def rules(calendar: str | None) -> tuple[ServiceLevelRuleSettings, ...]:
    """The `sla` scenario's targets as exporter rules (names escaped: they contain quotes)."""
    return (
        *(
            ServiceLevelRuleSettings(
                match=ServiceLevelMatch(work_type=re.escape(name)), target=target, calendar=calendar
            )
            for name, target in SLA_TARGETS.items()
        ),
        ServiceLevelRuleSettings(target=SLA_DEFAULT_TARGET, calendar=calendar),
    )


@dataclass
class Run:
    clock: Clock
    poller: Poller
    registry: Any
    session: aiohttp.ClientSession
    sim_url: str

    async def truth(self, since: float) -> dict[str, Any]:
        url = f"{self.sim_url}/_sim/truth"
        params = {"since": repr(since), "warning": repr(WARNING)}
        async with self.session.get(url, params=params) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body

    def metrics(self) -> Series:
        """The service-level samples the collector renders (read as objects: parsing the
        text of 150 scrapes would take longer than the rest of the test)."""
        return {
            (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "org"))): s.value
            for family in self.registry.collect()
            if "service_level" in family.name or "pickup" in family.name
            for s in family.samples
        }


@asynccontextmanager
async def start(calendar: CalendarSettings | None) -> AsyncIterator[Run]:
    clock = Clock(FRIDAY_EVENING)
    app = create_app(SimulatorConfig(scenario="sla", seed=11, speed=1.0), clock=clock)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    target = target_for(base, org=ORG, api_key="demo", client_id="demo", client_secret="demo")
    cfg = Settings(
        targets=(target,),
        poll_interval=POLL,
        service_level_warning=WARNING,
        service_levels=rules("office" if calendar else None),
        calendars={"office": calendar} if calendar else {},
    )
    store = Store([ORG])
    try:
        async with aiohttp.ClientSession() as session:
            poller = build_poller(target, cfg, session, store.orgs[ORG], True, clock=clock)
            yield Run(clock, poller, build_registry(store, cfg, clock=clock), session, base)
    finally:
        await server.close()


def labels(email_type: str, work_type: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"email_type": email_type, "work_type": work_type, **extra}.items()))


# -- a reference business clock, slot by slot --------------------------------------------------
# The office opens and closes on the hour and London's offset is whole hours, so whether it is
# open is constant within each five-minute slot of UTC.
SLOT = 300


def open_seconds(cal: Any, a: float, b: float) -> float:
    total, t = 0.0, a
    while t < b:
        step = min(b, (t // SLOT + 1) * SLOT)
        total += (step - t) if wall_clock_open(cal, t) else 0.0
        t = step
    return total


def reached_at(cal: Any, a: float, seconds: float) -> float:
    """The first instant with `seconds` of open time since `a`."""
    t = a
    while True:
        step = (t // SLOT + 1) * SLOT
        if wall_clock_open(cal, t):
            if step - t >= seconds:
                return t + seconds
            seconds -= step - t
        t = step


Elapsed = Callable[[float, float], float]
Deadline = Callable[[float, float], float]


def expected(truth: dict[str, Any], now: float, elapsed: Elapsed, deadline: Deadline) -> Series:
    """The six families' values the truth calls for, on the given clock."""
    out: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    first: set[str] = set()
    for p in truth["pickups"]:
        if p["id"] in first:
            continue
        first.add(p["id"])
        met = elapsed(p["queued"], p["active"]) < sla_target(p["workType"])
        outcome = "met" if met else "missed"
        out["alvaria_emailqueue_pickups_total", labels(p["emailType"], p["workType"], service_level=outcome)] += 1  # fmt: skip
    nexts: dict[tuple[tuple[str, str], ...], float] = {}
    for w in truth["waiting"]:
        key = labels(w["emailType"], w["workType"])
        due = deadline(w["queued"], sla_target(w["workType"]))
        if due <= now:
            out["alvaria_emailqueue_service_level_breached_emails", key] += 1
        else:
            out["alvaria_emailqueue_service_level_at_risk_emails", key] += due <= now + WARNING
            nexts[key] = min(nexts.get(key, due), due)
    series: Series = dict(out)
    series |= {("alvaria_emailqueue_service_level_next_breach_timestamp_seconds", k): v for k, v in nexts.items()}  # fmt: skip
    return series


def compare(got: Series, want: Series, pickups_slack: int) -> None:
    for family in (
        "alvaria_emailqueue_service_level_breached_emails",
        "alvaria_emailqueue_service_level_at_risk_emails",
    ):
        mine = {k: v for (n, k), v in got.items() if n == family and v}
        truth = {k: v for (n, k), v in want.items() if n == family and v}
        assert mine == truth, family
    name = "alvaria_emailqueue_service_level_next_breach_timestamp_seconds"
    mine = {k: v for (n, k), v in got.items() if n == name}
    truth = {k: v for (n, k), v in want.items() if n == name}
    assert mine.keys() == truth.keys()
    for key, value in truth.items():
        assert mine[key] == pytest.approx(value, abs=1.0), key
    name = "alvaria_emailqueue_pickups_total"
    mine = {k: v for (n, k), v in got.items() if n == name and v}
    truth = {k: v for (n, k), v in want.items() if n == name}
    assert abs(sum(mine.values()) - sum(truth.values())) <= pickups_slack
    if pickups_slack == 0:
        assert mine == truth  # met / missed per group, exact: activeTime is always given


@pytest.mark.parametrize("business", [False, True], ids=["continuous", "business_hours"])
async def test_service_levels_match_the_ground_truth(business: bool) -> None:
    cal = OFFICE if business else None
    elapsed: Elapsed = lambda a, b: max(0.0, b - a)  # noqa: E731
    deadline: Deadline = lambda a, n: a + n  # noqa: E731
    if business:
        # OFFICE as the reference reads it: 08:00-18:00 Monday to Friday in London.
        week = tuple(((480, 1080),) if d < 5 else () for d in range(7))
        ref = SimpleNamespace(timezone="Europe/London", holidays=frozenset(), hours=week)
        elapsed = functools.cache(functools.partial(open_seconds, ref))
        deadline = functools.cache(functools.partial(reached_at, ref))
    async with start(cal) as run:
        assert await run.poller.poll_once()
        baseline = run.clock.now
        seen_breach = seen_pickups = 0
        for _ in range(150):  # 25 minutes in 10-second polls, across the 18:00 close
            run.clock.now += POLL
            assert await run.poller.poll_once()
            truth = await run.truth(since=baseline)
            want = expected(truth, run.clock.now, elapsed, deadline)
            compare(run.metrics(), want, pickups_slack=0)
            seen_breach += any("breached" in n for n, _ in want)
            seen_pickups = len(truth["pickups"])
        # The run saw breaches, at-risk emails and pickups both ways, not just zeros.
        final = expected(truth, run.clock.now, elapsed, deadline)
        outcomes = {dict(k)["service_level"] for n, k in final if n.endswith("pickups_total")}
        assert seen_breach and seen_pickups > 20 and outcomes == {"met", "missed"}
