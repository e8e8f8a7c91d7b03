"""Flow counters across polls: baseline, exact counts against a scripted list, staleness."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any, TypeVar

import aiohttp
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.aggregation.builder import AggregationOptions
from exporter.app.wiring import build_poller, build_registry
from exporter.domain.models import Email
from exporter.polling.poller import Poller, PollTiming
from exporter.polling.store import OrgState, Store
from exporter.settings import Settings
from exporter.upstream.auth import TokenProvider
from exporter.upstream.client import Page
from tests.fake_alvaria import FakeAlvaria, serving, target_for
from tests.fakes import Clock, NoAuth


class ListSource:
    """A page source whose list the test rewrites between polls; `fail` makes the next poll fail."""

    def __init__(self) -> None:
        self.emails: list[Email] = []

    async def pages(self) -> AsyncGenerator[Page, None]:
        yield Page(0, len(self.emails), list(self.emails), len(self.emails))


def poller(source: Any, clock: Clock, stale_after: float = 150.0) -> Poller:
    auth: TokenProvider = NoAuth()
    return Poller(
        OrgState("acme"),
        source,
        auth,
        options=AggregationOptions(),
        timing=PollTiming(poll_interval=30, stale_after=stale_after),
        clock=clock,
    )


def e(id: str, state: str = "Queued", wt: str = "Billing", et: str = "InboundEmail") -> Email:
    return Email(id=id, state=state, email_type=et, work_type_name=wt)


async def test_first_poll_is_the_baseline_and_counts_nothing() -> None:
    source, clock = ListSource(), Clock(1_800_000_000.0)
    p = poller(source, clock)
    source.emails = [e("1"), e("2")]
    assert await p.poll_once()
    assert sum(p.state.arrivals.values()) == 0
    assert sum(p.state.departures.values()) == 0
    assert p.state.arrivals == {("InboundEmail", "Billing"): 0}  # pre-created for rate()


K = TypeVar("K")


def nonzero(counts: Mapping[K, int]) -> dict[K, int]:
    return {key: n for key, n in counts.items() if n}


async def test_scripted_changes_are_counted_exactly() -> None:
    source, clock = ListSource(), Clock(1_800_000_000.0)
    p = poller(source, clock)
    source.emails = [e("1"), e("2"), e("3", "Active")]
    await p.poll_once()
    clock.now += 30
    # 1 leaves from Queued, 2 moves to Active, 3 leaves from Active, 4 and 5 arrive, 6 arrives in Sales
    source.emails = [e("2", "Active"), e("4"), e("5"), e("6", wt="Sales", et="ManualOutboundEmail")]
    await p.poll_once()
    clock.now += 30
    # 2 goes to Wrap, 4 changes work type (not an arrival), 5 leaves from Queued
    source.emails = [
        e("2", "Wrap"),
        e("4", wt="Sales"),
        e("6", wt="Sales", et="ManualOutboundEmail"),
    ]
    await p.poll_once()
    s = p.state
    assert nonzero(s.arrivals) == {
        ("InboundEmail", "Billing"): 2,
        ("ManualOutboundEmail", "Sales"): 1,
    }
    assert nonzero(s.departures) == {
        ("Queued", "InboundEmail", "Billing"): 2,
        ("Active", "InboundEmail", "Billing"): 1,
    }
    assert nonzero(s.transitions) == {("Queued", "Active"): 1, ("Active", "Wrap"): 1}


async def test_failed_poll_keeps_the_baseline_but_a_stale_gap_resets_it() -> None:
    source, clock = ListSource(), Clock(1_800_000_000.0)
    p = poller(source, clock, stale_after=90)
    source.emails = [e("1")]
    await p.poll_once()

    class Failing:
        async def pages(self) -> AsyncGenerator[Page, None]:
            from exporter.domain.errors import ServerHTTPError

            raise ServerHTTPError("boom", status=503)
            yield  # pragma: no cover

    good = p._client
    p._client = Failing()
    clock.now += 30
    assert not await p.poll_once()
    p._client = good
    clock.now += 30
    source.emails = [e("2")]
    assert await p.poll_once()
    assert sum(p.state.arrivals.values()) == 1
    assert sum(p.state.departures.values()) == 1

    clock.now += 91  # longer than stale_after since the last success
    source.emails = [e("3")]
    assert await p.poll_once()
    assert sum(p.state.arrivals.values()) == 1
    assert sum(p.state.departures.values()) == 1


def settings_for(api: FakeAlvaria, **settings: Any) -> Settings:
    """Settings polling the fake API as its one organisation."""
    target = target_for(
        api.base_url,
        org=api.org,
        api_key=api.api_key,
        client_id=api.client_id,
        client_secret=api.client_secret,
    )
    return Settings(targets=(target,), **settings)


async def test_counters_scraped_over_http_match_hand_computed_values() -> None:
    api = FakeAlvaria(page_cap=2)
    items = lambda *specs: [  # noqa: E731 -- a tiny local builder reads best inline
        {"id": i, "state": s, "emailType": "InboundEmail", "workTypeName": w} for i, s, w in specs
    ]
    async with serving(api), aiohttp.ClientSession() as session:
        cfg = settings_for(api)
        store = Store([api.org])
        p = build_poller(cfg.targets[0], cfg, session, store.orgs[api.org], True)
        registry = build_registry(store, cfg)
        script = [
            items(("a", "Queued", "Billing"), ("b", "Queued", "Billing"), ("c", "Active", "Sales")),
            items(("b", "Active", "Billing"), ("c", "Wrap", "Sales"), ("d", "Queued", "Sales")),
            items(("c", "Wrap", "Sales"), ("d", "Queued", "Sales"), ("e", "Queued2", "Billing")),
            items(("e", "Active", "Billing")),
        ]
        for step in script:
            api.items = step
            assert await p.poll_once()
        text = generate_latest(registry).decode()

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }

    def counter(name: str, **labels: str) -> float:
        return samples[
            (f"alvaria_emailqueue_{name}_total", tuple(sorted({"org": "acme", **labels}.items())))
        ]

    assert counter("arrivals", email_type="InboundEmail", work_type="Sales") == 1  # d
    assert counter("arrivals", email_type="InboundEmail", work_type="Billing") == 1  # e
    departures = {"Queued": 1, "Active": 1, "Wrap": 0}  # a from Queued, b from Active (Billing)
    for state, n in departures.items():
        assert (
            counter("departures", email_type="InboundEmail", work_type="Billing", state=state) == n
        )
    assert (
        counter("departures", email_type="InboundEmail", work_type="Sales", state="Wrap") == 1
    )  # c
    assert (
        counter("departures", email_type="InboundEmail", work_type="Sales", state="Queued") == 1
    )  # d
    assert counter("state_transitions", from_state="Queued", to_state="Active") == 1  # b
    assert counter("state_transitions", from_state="Active", to_state="Wrap") == 1  # c
    assert counter("state_transitions", from_state="Queued2", to_state="Active") == 1  # e
    total_arrivals = sum(
        v for (n, _), v in samples.items() if n == "alvaria_emailqueue_arrivals_total"
    )
    total_departures = sum(
        v for (n, _), v in samples.items() if n == "alvaria_emailqueue_departures_total"
    )
    assert total_arrivals - total_departures == len(script[-1]) - len(script[0])


async def test_flow_label_sets_of_groups_gone_longer_than_series_ttl_are_dropped() -> None:
    source, clock = ListSource(), Clock(1_800_000_000.0)
    p = Poller(
        OrgState("acme"),
        source,
        NoAuth(),
        options=AggregationOptions(series_ttl=60),
        timing=PollTiming(poll_interval=30, stale_after=150),
        clock=clock,
    )
    source.emails = [e("1", wt="Campaign"), e("2")]
    await p.poll_once()
    clock.now += 30
    source.emails = [e("2")]
    await p.poll_once()
    assert p.state.departures[("Queued", "InboundEmail", "Campaign")] == 1
    clock.now += 61
    await p.poll_once()
    assert ("InboundEmail", "Campaign") not in p.state.arrivals
    assert not any(key[2] == "Campaign" for key in p.state.departures)
    assert p.state.arrivals == {("InboundEmail", "Billing"): 0}


@pytest.mark.parametrize("agent_metrics", [True, False])
async def test_the_agent_gauge_is_fed_through_the_daemons_wiring(agent_metrics: bool) -> None:
    # The client leaves the agent fields undecoded unless the per-agent gauge is exported.
    api = FakeAlvaria(page_cap=2)
    api.items = [
        {"id": str(i), "state": "Active", "emailType": "InboundEmail", "workTypeName": "Sales",
         "queuedTime": "2027-01-15T07:00:00Z", "workHandlerName": f"agent {i % 2}"}
        for i in range(5)
    ]  # fmt: skip
    async with serving(api), aiohttp.ClientSession() as session:
        cfg = settings_for(api, agent_metrics=agent_metrics)
        store = Store([api.org])
        p = build_poller(cfg.targets[0], cfg, session, store.orgs[api.org], True)
        assert await p.poll_once()
    snapshot = store.orgs[api.org].snapshot
    assert snapshot is not None
    expected = {("agent 0", "Active"): 3, ("agent 1", "Active"): 2} if agent_metrics else {}
    assert dict(snapshot.agents) == expected
