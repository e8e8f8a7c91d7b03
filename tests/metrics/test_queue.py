"""Scrape-time rendering: staleness, ages, exporter series and HELP text."""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.aggregation.builder import AggregationOptions, aggregate
from exporter.domain import names
from exporter.domain.errors import POLL_ERROR_REASONS
from exporter.domain.models import Email
from exporter.metrics import buildinfo
from exporter.metrics.families import Block
from exporter.metrics.queue import QueueCollector
from exporter.metrics.textformat import Renderer
from exporter.polling.store import Store
from tests.fakes import Clock

T0 = 1_800_000_000.0
WITH_AGENTS = AggregationOptions(agent_metrics=True)


def render(
    store: Store, clock: Clock, stale_after: float = 300.0, poll_interval: float = 60.0
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = CollectorRegistry()
    registry.register(
        QueueCollector(
            store,
            age_buckets=(60.0, 600.0),
            stale_after=stale_after,
            poll_interval=poll_interval,
            clock=clock,
        )
    )
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def store_with(emails: list[Email], at: float = T0) -> Store:
    store = Store(["acme"])
    snap = aggregate(emails, now=at, options=AggregationOptions())
    store.orgs["acme"].record_success(snap, 0.25, None, at + 3600)
    return store


def test_ages_grow_between_scrapes_and_are_never_negative() -> None:
    clock = Clock(T0)
    store = store_with(
        [
            Email(id="1", state="Queued", queued_time="2027-01-15T07:59:00Z"),  # 60 s before T0
            Email(id="2", state="Active", queued_time="2030-01-01T00:00:00Z"),  # future
        ]
    )
    first = render(store, clock)["alvaria_emailqueue_oldest_email_age_seconds"]
    clock.now += 10
    later = render(store, clock)["alvaria_emailqueue_oldest_email_age_seconds"]
    key = (
        ("email_type", "unknown"),
        ("org", "acme"),
        ("state", "Queued"),
        ("work_type", "unknown"),
    )
    assert later[key] == first[key] + 10
    assert min(later.values()) == 0


def test_stale_snapshot_drops_queue_series_but_keeps_exporter_series() -> None:
    clock = Clock(T0)
    store = store_with([Email(id="1", state="Queued")])
    store.orgs["acme"].record_failure("timeout", "timed out", 10.0, None)
    clock.now += 299
    kept = render(store, clock)
    assert kept["alvaria_emailqueue_up"] == {(("org", "acme"),): 0}
    assert "alvaria_emailqueue_emails" in kept
    clock.now += 2
    gone = render(store, clock)
    assert "alvaria_emailqueue_emails" not in gone
    assert "alvaria_emailqueue_waiting_email_age_seconds_bucket" not in gone
    assert gone["alvaria_emailqueue_last_poll_success_timestamp_seconds"] == {
        (("org", "acme"),): T0
    }
    assert gone["alvaria_emailqueue_polls_total"] == {(("org", "acme"),): 2}


def test_every_poll_error_reason_is_pre_created() -> None:
    metrics = render(store_with([]), Clock(T0))
    reasons = {dict(k)["reason"] for k in metrics["alvaria_emailqueue_poll_errors_total"]}
    assert reasons == set(POLL_ERROR_REASONS)


def test_help_says_values_come_from_the_last_poll() -> None:
    registry = CollectorRegistry()
    registry.register(
        QueueCollector(
            store_with([Email(id="1")]), age_buckets=(60.0,), stale_after=300, poll_interval=60
        )
    )
    text = generate_latest(registry).decode()
    for name in ("emails", "oldest_email_timestamp_seconds", "oldest_email_age_seconds"):
        help_line = next(
            line
            for line in text.splitlines()
            if line.startswith(f"# HELP alvaria_emailqueue_{name} ")
        )
        assert "last successful poll" in help_line


def test_build_info_and_token_expiry() -> None:
    metrics = render(store_with([]), Clock(T0))
    (labels,) = metrics["alvaria_emailqueue_exporter_build_info"]
    assert dict(labels) == {
        "version": __version__,
        "revision": buildinfo.revision(),
        "python_version": platform.python_version(),
    }
    assert metrics["alvaria_emailqueue_token_expiry_timestamp_seconds"] == {
        (("org", "acme"),): T0 + 3600
    }


def test_invalid_and_overflow_series_start_at_zero() -> None:
    metrics = render(store_with([]), Clock(T0))
    invalid = {
        dict(k)["reason"]: v for k, v in metrics["alvaria_emailqueue_invalid_items_total"].items()
    }
    overflow = {
        dict(k)["label"]: v for k, v in metrics["alvaria_emailqueue_label_overflow_total"].items()
    }
    assert invalid == {"missing_id": 0, "not_object": 0}
    assert overflow == {"agent": 0, "email_type": 0, "state": 0, "work_type": 0}


def test_configured_timing_is_exported_per_org_whatever_the_poll_outcome() -> None:
    store = Store(["acme", "globex"])
    store.orgs["acme"].record_failure("timeout", "timed out", 10.0, None)
    metrics = render(store, Clock(T0), stale_after=450.0, poll_interval=90.0)
    assert metrics["alvaria_emailqueue_poll_interval_seconds"] == {
        (("org", "acme"),): 90.0,
        (("org", "globex"),): 90.0,
    }
    assert metrics["alvaria_emailqueue_stale_after_seconds"] == {
        (("org", "acme"),): 450.0,
        (("org", "globex"),): 450.0,
    }


def test_flow_counters_follow_each_poll_and_removed_organisations() -> None:
    from exporter.metrics.families import Registry, gather
    from exporter.metrics.textformat import Renderer

    store = store_with([Email(id="1", state="Queued", work_type_name="Billing")])
    collector = QueueCollector(store, age_buckets=(60.0,), stale_after=1e9, poll_interval=60)
    registry, renderer = Registry(), Renderer()
    registry.register(collector)
    line = 'alvaria_emailqueue_arrivals_total{email_type="unknown",org="acme",work_type="Billing"}'
    assert f"{line} 0.0" in renderer.render(gather(registry), "text").decode()
    state = store.orgs["acme"]
    previous = state.snapshot
    emails = [Email(id=str(i), state="Queued", work_type_name="Billing") for i in (1, 2, 3)]
    snap = aggregate(emails, now=T0 + 60, options=AggregationOptions(), previous=previous)
    rendered = state.arrivals  # the render thread may still read it: never changed in place
    before = dict(rendered)
    state.record_success(snap, 0.1, snap.flow, None)
    assert state.arrivals is not rendered and rendered == before
    assert f"{line} 2.0" in renderer.render(gather(registry), "text").decode()
    del store.orgs["acme"]
    assert "arrivals_total{" not in renderer.render(gather(registry), "text").decode()


def test_steps_give_what_blocks_gives_a_few_organisations_at_a_time() -> None:
    # A scrape reads the store a few organisations per turn of the event loop; the body is the
    # same, families only some organisations have (agents, here the fifth's) in their place.
    orgs = [f"o{n}" for n in range(7)]
    store = Store(orgs)
    for n, org in enumerate(orgs):
        handler = "agent-1" if n == 4 else None
        email = Email(id=str(n), state="Active", work_handler_id=handler)
        store.orgs[org].record_success(
            aggregate([email], now=T0, options=WITH_AGENTS), 0.25, None, None
        )
    store.orgs["o2"].record_failure("timeout", "timed out", 1.0, None)
    collector = QueueCollector(store, age_buckets=(60.0,), stale_after=300.0,
                               poll_interval=60.0, clock=Clock(T0))  # fmt: skip
    steps = collector.steps(orgs_per_step=2)
    turns = 0
    while True:
        try:
            next(steps)
            turns += 1
        except StopIteration as done:
            stepped: list[Block] = done.value
            break
    assert turns == 3  # four steps of at most two organisations
    whole = list(collector.blocks())
    assert [b.family.name for b in stepped] == [b.family.name for b in whole]
    assert names.AGENT_EMAILS in {b.family.name for b in stepped}
    renderer = Renderer()
    assert renderer.render([stepped], "text") == renderer.render([whole], "text")
