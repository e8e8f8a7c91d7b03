"""The series budget: all families of an organisation within max_series, folded deterministically
and stably, zero-filling included; the series gauge reports what is really exported."""

from __future__ import annotations

import random
from collections import Counter

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.aggregation.builder import DEFAULT_COST, AggregationOptions, SnapshotBuilder
from exporter.aggregation.series_budget import OWN_SERIES, SeriesCost
from exporter.domain.errors import POLL_ERROR_REASONS
from exporter.domain.models import Email, Snapshot
from exporter.domain.names import OTHER, SERIES
from exporter.metrics.families import Family, series_cost
from exporter.metrics.queue import QueueCollector, declared_families
from exporter.polling.store import OrgState, Store
from exporter.upstream.limit_headers import Announced
from tests.fakes import Clock

T0 = 1_800_000_000.0
BUCKETS = (60.0, 600.0, 3600.0)
ORG = "acme"


def options(**kw: object) -> AggregationOptions:
    cost = series_cost(declared_families(), len(BUCKETS))
    return AggregationOptions(series_cost=cost, wait_buckets=BUCKETS, **kw)  # type: ignore[arg-type]


def emails_of(types: int, work_types: int, per_pair: int = 1) -> list[Email]:
    out = []
    for t in range(types):
        for w in range(work_types):
            for n in range(per_pair):
                out.append(
                    Email(
                        id=f"{t}-{w}-{n}",
                        state=("Queued", "Active", "Wrap")[n % 3],
                        email_type=f"T{t}",
                        work_type_name=f"W{w}",
                        queued_time="2027-01-15T07:00:00Z",
                    )
                )
    return out


class Org:
    """One organisation polled through the real builder, store and collector."""

    def __init__(self, opts: AggregationOptions) -> None:
        self.options = opts
        self.store = Store([ORG])
        self.clock = Clock(T0)

    @property
    def state(self) -> OrgState:
        return self.store.orgs[ORG]

    def poll(self, pages: list[list[Email]]) -> Snapshot:
        state = self.state
        builder = SnapshotBuilder(self.options, state.snapshot, state.reserved_series())
        for page in pages:
            builder.add(page)
        snap = builder.finish(self.clock.now)
        state.record_success(snap, 0.1, snap.flow, None)
        self.clock.now += 30
        return snap

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        registry = CollectorRegistry()
        registry.register(
            QueueCollector(
                self.store,
                age_buckets=BUCKETS,
                stale_after=300.0,
                poll_interval=30.0,
                clock=self.clock,
            )
        )
        text = generate_latest(registry).decode()
        return [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def exported(self) -> tuple[int, float]:
        """Samples carrying this organisation's label, and what the series gauge says."""
        samples = self.samples()
        count = sum(1 for _, labels, _ in samples if labels.get("org") == ORG)
        (gauge,) = [v for name, labels, v in samples if name == SERIES]
        return count, gauge


def test_the_series_gauge_counts_every_exported_series_of_the_organisation() -> None:
    org = Org(options(agent_metrics=True))
    emails = emails_of(2, 3, 4)
    for i, e in enumerate(emails):
        emails[i] = msgspec.structs.replace(e, work_handler_name=f"agent{i % 3}")
    org.poll([emails])
    org.poll([emails[3:]])
    count, gauge = org.exported()
    assert gauge == count


def test_many_email_and_work_types_stay_within_the_budget() -> None:
    # The case (25 email types x 600 work types, every state zero-filled: 147,294
    # series), scaled down to 25 x 20. Now everything of the organisation fits max_series.
    org = Org(options(max_series=3000))
    snap = org.poll([emails_of(25, 20)])
    count, gauge = org.exported()
    assert count == gauge <= 3000
    assert count > 2500  # the budget is used, not wasted
    assert sum(snap.counts.values()) == 500  # every email still counted, some under other
    assert any(k[2] == OTHER for k, n in snap.counts.items() if n)
    assert org.state.overflow["work_type"] >= 1


def test_folding_does_not_depend_on_the_order_pages_arrive_in() -> None:
    emails = emails_of(4, 60, 2) + emails_of(1, 5, 9)
    first = Org(options(max_series=2000)).poll([emails])
    shuffled = emails[:]
    random.Random(7).shuffle(shuffled)
    pages = [shuffled[i : i + 50] for i in range(0, len(shuffled), 50)]
    second = Org(options(max_series=2000)).poll(pages)
    assert dict(first.counts) == dict(second.counts)
    assert any(k[2] == OTHER for k, n in first.counts.items() if n)  # something did fold
    assert {k: list(v.timestamps) for k, v in first.waiting.items()} == {
        k: list(v.timestamps) for k, v in second.waiting.items()
    }


def test_pairs_with_live_series_keep_them_when_bigger_ones_arrive() -> None:
    org = Org(options(max_series=1000))
    small = emails_of(1, 8, 1)
    first = org.poll([small])
    kept = {k[1:] for k, n in first.counts.items() if n}
    # Many new, bigger pairs: they fold; the pairs that had series keep them.
    big = [
        Email(id=f"b{w}-{n}", state="Queued", email_type="T9", work_type_name=f"Big{w}")
        for w in range(40)
        for n in range(10)
    ]
    for _ in range(3):
        snap = org.poll([small, big])
        assert kept <= {k[1:] for k, n in snap.counts.items() if n}
        assert org.exported()[0] <= 1000


def test_folded_values_are_counted_once_per_organisation_not_per_poll() -> None:
    org = Org(options(max_work_types=2))
    emails = emails_of(1, 5, 2)  # W2, W3, W4 fold under the work-type cap
    for _ in range(5):
        org.poll([emails])
    assert org.state.overflow["work_type"] == 3
    org.poll([[*emails, Email(id="new", work_type_name="W5")]])
    assert org.state.overflow["work_type"] == 4


def test_a_failed_poll_does_not_mark_values_as_counted() -> None:
    org = Org(options(max_work_types=1))
    builder = SnapshotBuilder(org.options, None)
    builder.add(emails_of(1, 3))  # folds W1, W2 but is never finished (the poll failed)
    org.poll([emails_of(1, 3)])
    assert org.state.overflow["work_type"] == 2


def test_agents_fold_within_what_the_pairs_leave() -> None:
    emails = [
        Email(id=str(n), state="Active", work_type_name="W", work_handler_name=f"agent{n}")
        for n in range(3000)
    ]
    org = Org(options(agent_metrics=True, max_agents=5000, max_series=1500))
    snap = org.poll([emails])
    count, gauge = org.exported()
    assert count == gauge <= 1500
    assert snap.agents[(OTHER, "Active")] > 0
    assert sum(snap.agents.values()) == 3000
    own = {a for a, _ in snap.agents if a != OTHER}
    assert org.state.overflow["agent"] == 3000 - len(own)  # each folded agent counted once


def test_the_reserve_covers_the_exporters_own_series() -> None:
    org = Org(options())
    org.poll([emails_of(1, 1)])
    state = org.state
    for reason in POLL_ERROR_REASONS:
        state.poll_errors[reason] += 1
    for endpoint in ("token", "emails"):
        state.observe_request(endpoint, "200", 0.1)
        # The API's own limits (SPEC §11): fixed series per endpoint, paid from the reserve.
        state.observe_limits(endpoint, Announced(110, 17, 1e9))
        state.observe_certificate(endpoint, 2e9)
    # Every family priced per pair, group or agent is paid for by the budget; the rest must fit
    # the reserve (the exporter's own series, transitions, the handling KPIs' fixed series).
    priced = {f.name for f in declared_families() if f.per is not None}

    def family(sample: str) -> str:
        for suffix in ("_bucket", "_count", "_sum", "_gcount", "_gsum", "_total"):
            if sample.endswith(suffix) and sample.removesuffix(suffix) in priced:
                return sample.removesuffix(suffix)
        return sample

    own = Counter(
        name
        for name, labels, _ in org.samples()
        if labels.get("org") == ORG and family(name) not in priced
    )
    assert own["alvaria_emailqueue_api_rate_limit_remaining"] == 2
    assert own["alvaria_emailqueue_api_certificate_expiry_timestamp_seconds"] == 2
    assert OWN_SERIES + len(state.api_requests) <= state.reserved_series()
    assert sum(own.values()) <= state.reserved_series()


def test_without_a_budget_the_same_queue_exports_far_more() -> None:
    # The control for the tests above: the same 25 x 20 queue under a budget too large to bite.
    org = Org(options(max_series=10_000_000))
    org.poll([emails_of(25, 20)])
    count, gauge = org.exported()
    assert count == gauge > 10_000


def test_flow_counted_while_folding_matches_the_reference_diff() -> None:
    from exporter.aggregation.builder import diff

    rng = random.Random(3)
    org = Org(options(max_series=1200))
    pool = emails_of(6, 30, 2)
    previous = None
    for _ in range(6):
        polled = [msgspec.structs.replace(e, state=rng.choice(["Queued", "Active"])) for e in pool]
        polled = rng.sample(polled, k=len(polled) * 3 // 4)
        snap = org.poll([polled])
        assert any(k[2] == OTHER for k, n in snap.counts.items() if n)
        if previous is not None:
            assert snap.flow is not None
            reference = diff(previous, snap)
            assert +snap.flow.arrivals == +reference.arrivals
            assert +snap.flow.departures == +reference.departures
            assert +snap.flow.transitions == +reference.transitions
        previous = snap


def test_series_costs_are_derived_from_the_family_declarations() -> None:
    derived = series_cost(declared_families(), 10)
    assert derived == DEFAULT_COST  # the aggregation's default is the derived one
    # A family added with `per` is priced from then on, with no table to keep in step.
    extra = Family.histogram("alvaria_emailqueue_extra", "x", "org", "work_type", per="pair")
    more = series_cost((*declared_families(), extra), 10)
    assert more == SeriesCost(derived.pair + 13, derived.group, derived.dated_group, derived.agent)


def test_every_family_keyed_by_queue_labels_declares_what_it_grows_with() -> None:
    growing = {"work_type", "agent"}
    unpriced = [f.name for f in declared_families() if growing & set(f.labels) and f.per is None]
    assert unpriced == []


def test_the_quick_fit_check_never_skips_a_poll_that_would_fold() -> None:
    from exporter.aggregation.series_budget import PairUse, SeriesBudget

    rng = random.Random(11)
    states = ["Queued", "Active", "Wrap", "Odd1", "Odd2"]
    skipped = 0
    for _ in range(300):
        budget = SeriesBudget(rng.randrange(50, 3000), DEFAULT_COST, states[:3])
        uses: dict[tuple[str, str], PairUse] = {}
        groups = 0
        for pair in {(f"E{rng.randrange(3)}", f"W{rng.randrange(30)}") for _ in range(20)}:
            held = set(rng.sample(states, rng.randrange(1, 5)))
            uses[pair] = PairUse(rng.randrange(1, 9), held, set(rng.sample(sorted(held), 1)))
            groups += len(held)
        live = [(f"E{rng.randrange(3)}", f"W{rng.randrange(30)}") for _ in range(5)]
        for pair in live:
            uses.setdefault(pair, PairUse())
        reserved = rng.randrange(0, 200)
        agents = {(f"a{i}", "Active"): 1 for i in range(rng.randrange(0, 40))}
        if budget.surely_fits(len(live) + len(uses), groups, len(agents), reserved):
            skipped += 1
            folds, spent = budget.plan_pairs(uses, live, reserved)
            assert not folds and reserved + spent <= budget.limit
            assert not budget.plan_agents(agents, [], budget.limit - reserved - spent)
    assert 30 < skipped < 270  # both sides of the check were exercised
