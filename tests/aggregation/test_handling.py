"""The handling KPIs (SPEC §10) against a scripted upstream whose true durations are known.

The production pipeline (wiring.build_poller / build_registry over a real aiohttp session) polls
a loopback upstream every 30 s of a hand-moved clock; the upstream serves, at each poll, what the
script says the queue held at that instant. Every email's true stays, handle and resolution times
and delivery lag are written down below; the exported histograms must hold exactly as many
observations in each bucket as the true durations, with sums within one poll interval per
observation (changes are dated by the first poll that sees them).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app.wiring import build_poller, build_registry, handling_options
from exporter.domain.names import DEFAULT_WAITING_STATES
from exporter.polling.store import Store
from exporter.settings import Settings
from tests.fake_alvaria import (
    ORG,
    FakeAlvaria,
    serving,
    target_for,
)
from tests.fakes import Clock

T0 = 1_800_000_000.0
POLL = 30.0
BUCKETS = (60.0, 300.0, 900.0, 3600.0)
IN, OUT = "InboundEmail", "ManualOutboundEmail"
RENAMED_AT = 400.0  # work type 11 is renamed then, for every email that carries it
LAST_POLL = 750.0


def work_type_name(work_type_id: str, t: float) -> str:
    if work_type_id == "11":
        return "Billing" if t < RENAMED_AT else "Billing & Refunds"
    return "Sales"  # 12 and 13 share a name


def iso(t: float) -> str:
    return datetime.fromtimestamp(T0 + t, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Life:
    """One email: when it arrives and leaves, and what changes at which instant (seconds
    after T0); every change is visible from its instant on."""

    id: int
    email_type: str
    work_type: str
    arrive: float
    depart: float
    fields: dict[str, Any]
    changes: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def item(self, t: float) -> dict[str, Any] | None:
        if not self.arrive <= t < self.depart:
            return None
        out = {"id": str(self.id), "emailType": self.email_type, "workTypeId": self.work_type}
        out["workTypeName"] = work_type_name(self.work_type, t)
        out |= {k: iso(v) if k.endswith("Time") else v for k, v in self.fields.items()}
        for at, change in self.changes:
            if at <= t:
                out |= {k: iso(v) if k.endswith("Time") else v for k, v in change.items()}
        return out


def queued(t: float, thread: str, **extra: Any) -> dict[str, Any]:
    return {"state": "Queued", "queuedTime": t, "receivedTime": t, "threadId": thread, **extra}


def active(t: float, agent: str, state: str = "Active") -> dict[str, Any]:
    return {"state": state, "activeTime": t, "workHandlerId": agent}


SCRIPT = [
    # A: present at the first poll, so never observed, not even the Wrap stay it begins
    # later; its thread is remembered when it leaves.
    Life(1, IN, "11", -1000, 145, queued(-1000, "T-A") | active(-500, "ag1"),
         [(100, {"state": "Wrap"})]),
    # B: waits, is handled, wraps up and leaves.
    Life(2, IN, "11", 12, 280, queued(12, "T-B", receivedTime=5, sentTime=-95),
         [(100, active(100, "ag2")), (250, {"state": "Wrap"})]),
    # C: withdrawn from a waiting state: its stays count, it is not a handled email.
    Life(3, IN, "11", 40, 370, queued(40, "T-C", sentTime=40), [(130, {"state": "Queued2"})]),
    # D: a manual outbound email, active from the start (activeTime = queuedTime).
    Life(4, OUT, "12", 95, 550,
         {"queuedTime": 95, "receivedTime": 95, "sentTime": 95, "threadId": "T-D"}
         | active(95, "ag3"), [(500, {"state": "Wrap"})]),
    # E: a draft, handled from the poll that first sees it (no activeTime yet); its agent
    # holds B at the same time.
    Life(5, OUT, "11", 160, 700,
         {"state": "Draft", "queuedTime": 160, "receivedTime": 155, "sentTime": 150,
          "threadId": "T-E", "workHandlerId": "ag2"},
         [(300, active(300, "ag2", "DraftActive"))]),
    # F: transferred and taken again: handling started at the first pickup. Its thread is
    # B's, but B is still in the list: not a repeat contact.
    Life(6, IN, "12", 200, 505, queued(200, "T-B", sentTime=190),
         [(230, active(230, "ag1")), (330, {"state": "Transferred", "workHandlerId": None}),
          (420, active(420, "ag3", "TransferredActive")), (470, {"state": "Wrap"})]),
    # G: writes again on B's thread after B left: a repeat contact.
    Life(7, IN, "11", 330, 10_000, queued(330, "T-B", sentTime=300)),
    # H: writes again on A's thread (A was present at the first poll); withdrawn later.
    Life(8, IN, "12", 250, 400, queued(250, "T-A")),
    # J: C's thread, but C left more than thread_memory (300 s) before J is first seen.
    Life(9, IN, "11", 710, 10_000, queued(710, "T-C")),
    # K: turns Invalid and leaves from there: not handled.
    Life(10, IN, "12", 430, 560, queued(430, "T-K"), [(470, {"state": "Invalid"})]),
    # L: the second work type named Sales.
    Life(11, IN, "13", 600, 10_000, queued(600, "T-L", sentTime=590)),
]  # fmt: skip

# The truth, from the script: (labels, true seconds) of every observation.
B, D, E, F = (IN, "Billing"), (OUT, "Sales"), (OUT, "Billing & Refunds"), (IN, "Sales")
HANDLE = [(B, 180), (D, 455), (E, 540), (F, 275)]
RESOLUTION = [(B, 275), (D, 455), (E, 545), (F, 305)]
DWELL = [
    ("Queued", 88), ("Active", 150), ("Wrap", 30),  # B
    ("Queued", 90), ("Queued2", 240),  # C
    ("Active", 405), ("Wrap", 50),  # D
    ("Draft", 140), ("DraftActive", 400),  # E
    ("Queued", 30), ("Active", 100), ("Transferred", 90), ("TransferredActive", 50),
    ("Wrap", 35),  # F
    ("Queued", 150),  # H
    ("Queued", 40), ("Invalid", 90),  # K
]  # fmt: skip
LAG = [(IN, 100), (IN, 0), (OUT, 0), (OUT, 5), (IN, 10), (IN, 30), (IN, 10)]  # B C D E F G L
REPEATS = {(IN, "Billing"): 1, (IN, "Sales"): 1}  # G, H
IDS = {"Billing": "11", "Billing & Refunds": "11", "Sales": "12"}


def items_at(t: float) -> list[dict[str, Any]]:
    return [item for life in SCRIPT if (item := life.item(t)) is not None]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Run:
    upstream: FakeAlvaria
    clock: Clock
    store: Store
    registry: Any
    poller: Any

    async def poll_at(self, t: float) -> None:
        self.clock.now = T0 + t
        self.upstream.items = items_at(t)
        assert await self.poller.poll_once(), self.store.orgs[ORG].last_error

    def samples(self) -> Samples:
        text = generate_latest(self.registry).decode()
        return {
            (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "org"))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@asynccontextmanager
async def pipeline(**settings: Any) -> AsyncIterator[Run]:
    upstream = FakeAlvaria(items=[], page_cap=4)
    async with serving(upstream), aiohttp.ClientSession() as session:
        target = target_for(upstream.base_url)
        cfg = Settings(
            targets=(target,),
            poll_interval=POLL,
            page_size=100,
            age_buckets=BUCKETS,
            thread_memory=300.0,
            **settings,
        )
        store = Store([ORG])
        clock = Clock(T0)
        poller = build_poller(target, cfg, session, store.orgs[ORG], True, clock=clock)
        yield Run(upstream, clock, store, build_registry(store, cfg, clock=clock), poller)


def histogram(samples: Samples, name: str, labels: tuple[tuple[str, str], ...]) -> list[float]:
    """Cumulative bucket counts (BUCKETS, then +Inf), count and sum of one series."""
    le = [*(repr(b) for b in BUCKETS), "+Inf"]
    counts = [samples[(f"{name}_bucket", tuple(sorted((*labels, ("le", x)))))] for x in le]
    return [*counts, samples[(f"{name}_count", labels)], samples[(f"{name}_sum", labels)]]


def truth(observations: Sequence[tuple[Any, float]], key: Any) -> tuple[list[int], float, int]:
    seconds = [s for k, s in observations if k == key]
    cumulative = [sum(1 for s in seconds if s <= b) for b in BUCKETS] + [len(seconds)]
    return cumulative, float(sum(seconds)), len(seconds)


def check(
    samples: Samples, name: str, observations: Sequence[tuple[Any, float]], labels: Any
) -> None:
    """The family's series for every key observed: exact buckets and count, the sum within
    one poll interval per observation."""
    for key in {k for k, _ in observations}:
        got = histogram(samples, name, labels(key))
        cumulative, total, count = truth(observations, key)
        assert got[: len(BUCKETS) + 2] == [*cumulative, count], (name, key)
        assert abs(got[-1] - total) <= POLL * count, (name, key, got[-1], total)


def pair(mode: str) -> Any:
    def labels(key: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        work_type = IDS[key[1]] if mode == "id" else key[1]
        return (("email_type", key[0]), ("work_type", work_type))

    return labels


def agents_expected(t: float) -> tuple[int, Counter[str]]:
    waiting = set(DEFAULT_WAITING_STATES)
    held = Counter(
        item["workHandlerId"]
        for item in items_at(t)
        if item["state"] not in waiting and item["state"] != "Invalid" and item.get("workHandlerId")
    )
    return len(held), held


@pytest.mark.parametrize("mode", ["name", "id"])
async def test_every_kpi_against_the_script(mode: str) -> None:
    async with pipeline(work_type_label=mode) as run:
        t = 0.0
        while t <= LAST_POLL:
            await run.poll_at(t)
            samples = run.samples()
            working, held = agents_expected(t)
            assert samples[("alvaria_emailqueue_agents_working", ())] == working, t
            load = [sum(1 for n in held.values() if n <= le) for le in (1, 2, 3, 5, 8, 13)]
            for le, count in zip(("1.0", "2.0", "3.0", "5.0", "8.0", "13.0"), load, strict=True):
                assert samples[("alvaria_emailqueue_agent_load_bucket", (("le", le),))] == count
            assert samples[("alvaria_emailqueue_agent_load_gcount", ())] == working
            assert samples[("alvaria_emailqueue_agent_load_gsum", ())] == sum(held.values())
            t += POLL
        samples = run.samples()
    check(samples, "alvaria_emailqueue_handle_seconds", HANDLE, pair(mode))
    check(samples, "alvaria_emailqueue_resolution_seconds", RESOLUTION, pair(mode))
    check(samples, "alvaria_emailqueue_state_dwell_seconds", DWELL, lambda s: (("state", s),))
    check(samples, "alvaria_emailqueue_delivery_lag_seconds", LAG, lambda e: (("email_type", e),))
    # Nothing else was observed: the totals are the script's.
    totals: list[tuple[str, Sequence[object]]] = [
        ("alvaria_emailqueue_handle_seconds_count", HANDLE),
        ("alvaria_emailqueue_resolution_seconds_count", RESOLUTION),
        ("alvaria_emailqueue_state_dwell_seconds_count", DWELL),
        ("alvaria_emailqueue_delivery_lag_seconds_count", LAG),
    ]
    for name, observations in totals:
        assert sum(v for (n, _), v in samples.items() if n == name) == len(observations), name
    repeats = {
        labels: v for (n, labels), v in samples.items() if n.endswith("repeat_contacts_total") and v
    }
    assert repeats == {pair(mode)(k): n for k, n in REPEATS.items()}
    # Both names of the renamed work type, and both work types named Sales, within series_ttl.
    info = {dict(k)["work_type_id"]: v for (n, k), v in samples.items() if n.endswith("type_info")}
    names = {
        (dict(k)["work_type_id"], dict(k)["work_type"])
        for (n, k) in samples
        if n.endswith("work_type_info")
    }
    assert names == {
        ("11", "Billing"),
        ("11", "Billing & Refunds"),
        ("12", "Sales"),
        ("13", "Sales"),
    }
    assert set(info.values()) == {1.0}


async def test_a_gap_longer_than_stale_after_is_a_new_baseline() -> None:
    async with pipeline() as run:
        for t in (0.0, 30.0, 60.0):
            await run.poll_at(t)
        # B was picked up at 100 and went to Wrap at 250: both seen only after the gap.
        await run.poll_at(260.0)  # 200 s > stale_after (150 s)
        for t in (290.0, 320.0):
            await run.poll_at(t)
        samples = run.samples()
    dwell = {k: v for (n, k), v in samples.items() if n.endswith("state_dwell_seconds_count")}
    # Before the gap only C's... nothing had ended; across it nothing is dated; after it B's
    # departure (at 280, from a stay that began in the gap) is not observed either.
    assert sum(dwell.values()) == 0
    assert sum(v for (n, _), v in samples.items() if n.endswith("handle_seconds_count")) == 0


async def test_metric_denylist_removes_families_and_their_work() -> None:
    denylist = (
        "handle_seconds",
        "^alvaria_emailqueue_agent(s_working|_load)$",
        "repeat_contacts_total$",
    )
    async with pipeline(metric_denylist=denylist) as run:
        for t in (0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0, 210.0, 240.0, 270.0, 300.0):
            await run.poll_at(t)
        samples = run.samples()
        kpis = run.store.orgs[ORG].snapshot.handling  # type: ignore[union-attr]
        options = run.poller._options.handling
    families = {n for n, _ in samples}
    for gone in ("handle_seconds_bucket", "agents_working", "agent_load", "repeat_contacts_total"):
        assert not any(n.startswith(f"alvaria_emailqueue_{gone}") for n in families), gone
    assert "alvaria_emailqueue_resolution_seconds_count" in families
    # No work for what is denied: nothing measured, no agent or thread field decoded.
    assert (kpis.handle, kpis.repeats, kpis.agents_working) == (None, None, None)
    assert not options.handle and not options.agents and not options.repeat_contacts
    assert {"work_handler_id", "thread_id"}.isdisjoint(options.email_fields())
    exported = sum(1 for (n, k) in samples if n.startswith("alvaria_emailqueue_"))
    assert samples[("alvaria_emailqueue_series", ())] <= exported


def test_everything_denied_is_no_handling_work() -> None:
    cfg = Settings(metric_denylist=("handle|resolution|dwell|lag|repeat|agent|work_type_info",))
    options = handling_options(cfg)
    assert not options.tracking and not options.agents and not options.work_type_info
    assert options.email_fields() == frozenset()
    assert math.isclose(options.thread_memory, 7 * 86400)
