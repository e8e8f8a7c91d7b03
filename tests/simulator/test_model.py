"""The simulator's queue model: invariants, scenarios and the item format."""

from __future__ import annotations

import fnmatch
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.domain.names import EMAIL_TYPES, STATES
from exporter.simulator.entities import ALLOWED_TRANSITIONS, WAITING, iso, new_email, to_item
from exporter.simulator.model import QueueModel
from exporter.simulator.query import Filters
from exporter.simulator.scenarios import SLA_BACKLOG, WORK_TYPES, build_model, sla_target
from exporter.simulator.static import StaticQueue

NOW = 1_750_000_000.0
HOLDING = {"Active", "Wrap", "DraftActive", "TransferredActive", "ReassignedActive"}


def check_invariants(model: QueueModel) -> None:
    """Everything that must hold after any advance."""
    assert model.arrived == len(model.emails) + model.departed
    for (src, dst), count in model.transitions.items():
        assert dst in ALLOWED_TRANSITIONS[src], (src, dst, count)
    ids = [e.id for e in model.emails.values()]
    assert ids == sorted(set(ids)), "ids unique and in list order"
    holders = Counter(e.agent.id for e in model.emails.values() if e.state in HOLDING and e.agent)
    assert not holders or holders.most_common(1)[0][1] == 1, "an agent works on one email at a time"
    for e in model.emails.values():
        assert e.state in STATES and e.email_type in EMAIL_TYPES
        assert e.work_type_id in model.work_type_names
        assert e.sent <= e.received <= e.start <= e.queued <= e.last_modified <= model.now
        if e.active is not None:
            assert e.queued <= e.active <= e.last_modified
        if e.state in HOLDING:
            assert e.agent is not None and e.active is not None
        if e.state in {"Queued", "Queued2", "Reassigned"}:
            assert e.active is None


def test_steady_starts_in_motion() -> None:
    model = build_model("steady", random.Random(7), NOW, 1.0)
    emails = list(model.emails.values())
    assert len(emails) >= 200
    assert len({e.work_type_id for e in emails}) >= 4
    assert len({e.state for e in emails}) >= 4
    assert {e.email_type for e in emails} == set(EMAIL_TYPES)
    assert any(e.state in WAITING for e in emails)
    check_invariants(model)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    scenario=st.sampled_from(["steady", "surge", "agent_outage", "sla"]),
    steps=st.lists(st.floats(0.0, 600.0), min_size=1, max_size=6),
    speed=st.sampled_from([1.0, 3.0]),
)
def test_invariants_hold_while_time_moves(
    seed: int, scenario: str, steps: list[float], speed: float
) -> None:
    model = build_model(scenario, random.Random(seed), NOW, speed)
    check_invariants(model)
    now = NOW
    for dt in steps:
        now += dt
        model.advance_to(now)
        check_invariants(model)


def test_steady_backlog_stays_bounded() -> None:
    model = build_model("steady", random.Random(3), NOW, 1.0)
    sizes = []
    for minute in range(10, 241, 10):
        model.advance_to(NOW + minute * 60)
        sizes.append(model.waiting_count())
    assert 50 < min(sizes) and max(sizes) < 400, sizes
    assert model.departed > 0 and model.transitions[("Queued2", "Active")] > 0


def test_surge_grows_backlog_and_ages() -> None:
    model = build_model("surge", random.Random(3), NOW, 1.0)
    before = model.waiting_count()
    model.advance_to(NOW + 1800)
    middle = model.waiting_count()
    model.advance_to(NOW + 3600)
    after = model.waiting_count()
    assert before + 300 < middle < after


def test_agent_outage_never_shrinks_and_is_hours_old() -> None:
    model = build_model("agent_outage", random.Random(5), NOW, 1.0)
    assert min(e.queued for e in model.emails.values()) <= NOW - 5 * 3600
    assert model.waiting_count() >= 300
    size = len(model.emails)
    for step in range(1, 13):
        model.advance_to(NOW + step * 600)
        assert len(model.emails) >= size
        size = len(model.emails)
    assert model.departed == 0
    assert not any(e.state in HOLDING for e in model.emails.values())
    assert size > 400


def test_sla_backlog_breaches_a_minute_in_and_pickups_are_recorded() -> None:
    model = build_model("sla", random.Random(3), NOW, 2.0)
    names = model.work_type_names
    dues = [e.queued + sla_target(names[e.work_type_id]) for e in model.emails.values() if e.state in WAITING]  # fmt: skip
    assert len(dues) == SLA_BACKLOG and min(dues) == pytest.approx(NOW + 30)  # 60 s / speed 2
    assert all(e.active is not None for e in model.emails.values() if e.state in HOLDING)
    model.advance_to(NOW + 600)
    assert model.pickup_log, "agents took waiting emails"
    for event in model.pickup_log:
        email = model.emails.get(event.email_id)
        assert email is None or email.active is not None  # every picked-up email has activeTime
        assert event.queued <= event.at


def test_same_seed_same_queue() -> None:
    def snapshot(seed: int) -> list[tuple[int, str, str]]:
        model = build_model("steady", random.Random(seed), NOW, 1.0)
        model.advance_to(NOW + 600)
        return [(e.id, e.state, e.um_id) for e in model.emails.values()]

    assert snapshot(11) == snapshot(11)
    assert snapshot(11) != snapshot(12)


def test_speed_accelerates_flow_but_not_timestamps() -> None:
    def arrivals(speed: float) -> tuple[int, QueueModel]:
        model = build_model("steady", random.Random(1), NOW, speed)
        start = model.arrived
        model.advance_to(NOW + 600)
        return model.arrived - start, model

    slow, _ = arrivals(1.0)
    fast, model = arrivals(10.0)
    assert fast > 4 * slow
    assert max(e.last_modified for e in model.emails.values()) <= NOW + 600
    # Warm-up is compressed too: nothing was queued before the (shorter) simulated past.
    assert min(e.queued for e in model.emails.values()) > NOW - 3600


def test_past_now_is_ignored() -> None:
    model = build_model("steady", random.Random(1), NOW, 1.0)
    before = [(e.id, e.state) for e in model.emails.values()]
    model.advance_to(NOW - 100)
    assert [(e.id, e.state) for e in model.emails.values()] == before


def test_iso_format() -> None:
    assert iso(1555353700.874) == "2019-04-15T18:41:40.874Z"
    assert iso(1555353700.0) == "2019-04-15T18:41:40.000Z"


def test_item_fields_follow_the_reference() -> None:
    model = build_model("steady", random.Random(2), NOW, 1.0)
    email = next(e for e in model.emails.values() if e.agent is not None and e.state == "Active")
    plain = to_item(email, model.work_type_names, extended=False)
    extended = to_item(email, model.work_type_names, extended=True)
    assert "workTypeName" not in plain and "workHandlerName" not in plain
    assert extended["workHandlerName"] == email.agent.name if email.agent else False
    assert extended["workTypeName"] == model.work_type_names[email.work_type_id]
    for key in (
        "id",
        "threadId",
        "contactId",
        "interactionId",
        "workTypeId",
        "eventSequenceNumber",
    ):
        assert isinstance(plain[key], str) and plain[key].isdigit(), key


def test_work_type_names_include_quotes_and_non_ascii() -> None:
    names = [wt.name for wt in WORK_TYPES]
    assert len(names) >= 4
    assert any('"' in n and not n.isascii() for n in names)


def test_large_queue_is_deterministic() -> None:
    first = StaticQueue(500, WORK_TYPES, random.Random(0), NOW)
    second = StaticQueue(500, WORK_TYPES, random.Random(0), NOW + 5)
    assert [(e.id, e.state, e.work_type_id) for e in first.emails] == [
        (e.id, e.state, e.work_type_id) for e in second.emails
    ]
    assert len({e.id for e in first.emails}) == 500
    for e in first.emails:
        assert e.sent <= e.received <= e.start <= e.queued <= e.last_modified <= NOW
        if e.active is not None:
            assert e.queued <= e.active <= e.last_modified


@pytest.mark.parametrize("scenario", ["large", "nope"])
def test_build_model_rejects_non_dynamic_scenarios(scenario: str) -> None:
    with pytest.raises(ValueError, match="not a dynamic scenario"):
        build_model(scenario, random.Random(0), NOW, 1.0)


@settings(max_examples=60, deadline=None)
@given(
    um=st.text("0123456789-", min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 12), max_size=3),
    noise=st.sampled_from(["", "x", ".", "?"]),
)
def test_um_id_wildcards_match_like_a_glob(um: str, cuts: list[int], noise: str) -> None:
    pattern = um
    for cut in sorted(set(cuts), reverse=True):
        pattern = pattern[:cut] + "*" + pattern[cut:]
    pattern += noise
    sample = new_email(
        random.Random(0),
        email_id=1,
        seq=1,
        work_type=WORK_TYPES[0],
        email_type="InboundEmail",
        now=NOW,
    )
    sample.um_id = um
    # `*` is the only wildcard: `?` and `.` are literal characters.
    expected = fnmatch.fnmatchcase(um, pattern.replace("?", "[?]"))
    assert Filters(um_id=pattern).select([sample]) == ([sample] if expected else [])
