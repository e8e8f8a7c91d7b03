"""The handling KPIs against the simulator's ground truth (`steady` scenario, 300 polls).

The production pipeline (wiring.build_poller / build_registry) polls the simulator over HTTP;
simulator and exporter share one hand-moved clock, so every poll happens at a known instant.
`GET /_sim/truth` gives every email's real life: its stays (state, work type, when they began
and ended, the activeTime its items showed), when its handling started and when it left.

Two things are checked. First, that the exporter applies SPEC §10's dating conventions to what
the polls could see, exactly: the reference below reads the truth through the same poll instants
(which state each poll saw, the first poll showing each change) and must give the exporter's
histograms bucket for bucket. Second, that this is the truth to within one poll interval: every
stay that a poll saw is observed once, within one interval of its true length, and every handled
email's handle time is within one interval of its true one (up to the rare email whose first
moments of handling fell between two polls, counted and bounded).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app.wiring import build_poller, build_registry
from exporter.polling.store import Store
from exporter.settings import Settings
from exporter.simulator import SimulatorConfig
from exporter.simulator.app import create_app
from exporter.simulator.entities import WAITING
from tests.fake_alvaria import target_for
from tests.fakes import Clock

ORG = "demo"
POLL = 10.0
POLLS = 300  # 50 minutes of the simulated contact centre
START = 1_800_000_000.0
BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)
Key = tuple[tuple[str, str], ...]


def handling(state: str) -> bool:
    return state not in WAITING and state != "Invalid"


@dataclass
class Reference:
    """What the exporter must observe: (family, labels) -> observed seconds, and beside each
    the true seconds it stands for (None when the truth has no single value for it)."""

    observed: defaultdict[tuple[str, Key], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    pairs: list[tuple[str, float, float | None]] = field(default_factory=list)
    repeats: Counter[Key] = field(default_factory=Counter)

    def add(self, family: str, key: Key, seconds: float, true: float | None) -> None:
        self.observed[(family, key)].append(seconds)
        self.pairs.append((family, seconds, true))


def stay_at(email: dict[str, Any], t: float) -> dict[str, Any] | None:
    stays: list[dict[str, Any]] = email["stays"]
    for stay in stays:
        if stay["began"] <= t and (stay["ended"] is None or t < stay["ended"]):
            return stay
    return None


def reference(emails: list[dict[str, Any]], polls: list[float]) -> Reference:
    """SPEC §10 applied to what each poll saw of every email that arrived after the first."""
    ref = Reference()
    last = polls[-1]

    def poll_after(t: float) -> float | None:
        i = bisect_left(polls, t)
        return polls[i] if i < len(polls) else None

    seen: dict[str, list[float]] = {}
    for email in emails:
        end = email["departed"] if email["departed"] is not None else float("inf")
        seen[email["id"]] = [t for t in polls if email["arrived"] <= t < end]
    # Departures the exporter saw, by thread: (first poll without the email, email id).
    gone: defaultdict[str, list[float]] = defaultdict(list)
    for email in emails:
        if seen[email["id"]] and email["departed"] is not None:
            if (at := poll_after(email["departed"])) is not None:
                gone[email["thread"]].append(at)
    for email in emails:
        polls_seen = seen[email["id"]]
        if email["injected"] or email["arrived"] <= polls[0] or not polls_seen:
            continue
        _email(ref, email, polls_seen, poll_after(email["departed"] or last + 1), gone)
    return ref


def _email(
    ref: Reference,
    email: dict[str, Any],
    polls_seen: list[float],
    left: float | None,
    gone: dict[str, list[float]],
) -> None:
    kind = email["emailType"]
    runs: list[tuple[float, dict[str, Any]]] = []  # (first poll showing it, the stay)
    for t in polls_seen:
        stay = stay_at(email, t)
        assert stay is not None
        if not runs or runs[-1][1]["state"] != stay["state"]:
            runs.append((t, stay))
    ends = [t for t, _ in runs[1:]] + [left]
    for (begun, stay), end in zip(runs, ends, strict=True):
        if end is not None:
            true = stay["ended"] - stay["began"] if stay["ended"] is not None else None
            ref.add("state_dwell", (("state", stay["state"]),), end - begun, true)
    first = polls_seen[0]
    ref.add(
        "delivery_lag", (("email_type", kind),), max(0.0, email["received"] - email["sent"]), None
    )
    if any(at < first for at in gone.get(email["thread"], ())):
        ref.repeats[(("email_type", kind), ("work_type", runs[0][1]["workType"]))] += 1
    last_state = runs[-1][1]
    if left is None or not handling(last_state["state"]):
        return
    begun, stay = next((t, s) for t, s in runs if handling(s["state"]))
    active = stay["activeTime"]
    start = min(active, begun) if active is not None and active >= email["arrived"] else begun
    pair = (("email_type", kind), ("work_type", last_state["workType"]))
    first_handling = next(s for s in email["stays"] if handling(s["state"]))
    # The true handle time, when the first handling state was seen by a poll.
    true = email["departed"] - email["handlingStart"] if stay is first_handling else None
    ref.add("handle", pair, left - start, true)
    ref.add("resolution", pair, left - email["received"], email["departed"] - email["received"])


@dataclass
class Run:
    clock: Clock
    poller: Any
    registry: Any
    session: aiohttp.ClientSession
    sim_url: str

    async def truth(self, since: float) -> dict[str, Any]:
        url = f"{self.sim_url}/_sim/truth"
        async with self.session.get(url, params={"since": repr(since)}) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body

    def samples(self) -> dict[tuple[str, Key], float]:
        text = generate_latest(self.registry).decode()
        return {
            (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "org"))): s.value
            for family in text_string_to_metric_families(text)
            if family.name.startswith("alvaria_emailqueue_")
            for s in family.samples
        }


@asynccontextmanager
async def start() -> AsyncIterator[Run]:
    clock = Clock(START)
    app = create_app(SimulatorConfig(scenario="steady", seed=7, speed=1.0), clock=clock)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    target = target_for(base, org=ORG, api_key="demo", client_id="demo", client_secret="demo")
    cfg = Settings(targets=(target,), poll_interval=POLL, age_buckets=BUCKETS, page_size=1000)
    store = Store([ORG])
    try:
        async with aiohttp.ClientSession() as session:
            poller = build_poller(target, cfg, session, store.orgs[ORG], True, clock=clock)
            yield Run(clock, poller, build_registry(store, cfg, clock=clock), session, base)
    finally:
        await server.close()


def exported(samples: dict[tuple[str, Key], float], family: str) -> dict[Key, list[float]]:
    """Each series of a histogram family: cumulative buckets, count and sum."""
    name = f"alvaria_emailqueue_{family}_seconds"
    out: dict[Key, list[float]] = {}
    for (sample, key), value in samples.items():
        if sample == f"{name}_count" and value:
            le = [*(repr(b) for b in BUCKETS), "+Inf"]
            buckets = [samples[(f"{name}_bucket", tuple(sorted((*key, ("le", x)))))] for x in le]
            out[key] = [*buckets, value, samples[(f"{name}_sum", key)]]
    return out


def expected(ref: Reference, family: str) -> dict[Key, list[float]]:
    out: dict[Key, list[float]] = {}
    for (name, key), values in ref.observed.items():
        if name == family:
            buckets = [sum(1 for v in values if v <= b) for b in BUCKETS]
            out[key] = [*buckets, len(values), len(values), sum(values)]
    return out


def same(got: dict[Key, list[float]], want: dict[Key, list[float]], family: str) -> None:
    assert got.keys() == want.keys(), family
    for key, values in want.items():
        assert got[key][:-1] == values[:-1], (family, key)
        # The API's timestamps are in milliseconds, the truth's are not.
        assert abs(got[key][-1] - values[-1]) <= 0.001 * values[-2], (family, key)


async def test_handling_kpis_match_the_ground_truth() -> None:
    async with start() as run:
        polls = [run.clock.now]
        assert await run.poller.poll_once()
        for n in range(POLLS):
            run.clock.now += POLL
            assert await run.poller.poll_once()
            polls.append(run.clock.now)
            if n % 5:
                continue  # the agents are compared every fifth poll (scrapes cost time)
            now = await run.truth(since=run.clock.now)
            samples = run.samples()
            assert samples[("alvaria_emailqueue_agents_working", ())] == now["agentsWorking"]
            assert samples[("alvaria_emailqueue_agent_load_gsum", ())] == sum(now["agentLoads"])
            for le in (1, 2, 3, 5, 8, 13):
                key = ("alvaria_emailqueue_agent_load_bucket", (("le", f"{le}.0"),))
                assert samples[key] == sum(1 for n in now["agentLoads"] if n <= le)
        truth = await run.truth(since=polls[0])
        samples = run.samples()
    ref = reference(truth["emails"], polls)
    for family in ("handle", "resolution", "state_dwell", "delivery_lag"):
        same(exported(samples, family), expected(ref, family), family)
    repeats = Counter(
        {k: v for (n, k), v in samples.items() if n.endswith("repeat_contacts_total") and v}
    )
    assert repeats == ref.repeats
    # ... and that is the truth, to within one poll interval per observation.
    for family, seconds, true in ref.pairs:
        if true is not None:
            assert abs(seconds - true) < POLL, (family, seconds, true)
    handled = [(s, t) for f, s, t in ref.pairs if f == "handle"]
    unseen_start = sum(1 for _, t in handled if t is None)
    assert unseen_start <= 0.05 * len(handled)
    # Every stay that ended (of the emails that arrived after the first poll) and that some poll
    # saw is observed; the run saw plenty of each kind of event.
    dwell = sum(1 for f, _, _ in ref.pairs if f == "state_dwell")
    assert len(handled) > 100 and dwell > 500 and sum(ref.repeats.values()) > 5
    assert sum(1 for r in truth["repeatContacts"] if r["previousDeparture"] > polls[0]) > 5
