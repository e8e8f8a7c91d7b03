"""Named scenarios: the contact centre each one simulates and the API faults it injects."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from .entities import Agent, Email, WorkType, make_agents, new_email, object_id
from .model import ModelParams, QueueModel, Staffing, Stream

SCENARIOS: Final = ("steady", "surge", "agent_outage", "api_faults", "large", "sla")

WORK_TYPES: Final = (
    WorkType("111", "Service01", "service01@orgname.example.com"),
    WorkType("112", 'Billing "Priority" \u2013 Zürich', "billing@orgname.example.com"),
    WorkType("113", "Technical Support", "support@orgname.example.com"),
    WorkType("114", "Sales", "sales@orgname.example.com"),
    WorkType("115", "Returns & Refunds", "returns@orgname.example.com"),
    WorkType("116", "Kundenservice Österreich", "kundenservice@orgname.example.com"),
)
_WORK_TYPE_SHARE: Final[tuple[float, ...]] = (0.3, 0.2, 0.2, 0.12, 0.1, 0.08)
_EMAIL_TYPE_SHARE: Final[tuple[tuple[str, float], ...]] = (
    ("InboundEmail", 0.85),
    ("CampaignOutboundEmail", 0.1),
    ("ManualOutboundEmail", 0.05),
)
ARRIVALS_PER_SECOND: Final = 0.25
_WARMUP: Final = 3600.0  # model seconds simulated before "now" so the queue starts in motion
HOUR: Final = 3600.0
# The `sla` scenario's service levels (wall-clock seconds, by work type name), the targets its
# ground truth is judged against; the docs show the matching exporter configuration.
SLA_TARGETS: Final[dict[str, float]] = {
    "Sales": 600.0,
    'Billing "Priority" \u2013 Zürich': 300.0,
    "Technical Support": 900.0,
}
SLA_DEFAULT_TARGET: Final = 1800.0
SLA_BACKLOG: Final = 120


@dataclass(frozen=True, slots=True)
class Faults:
    """API misbehaviour injected per emails request (probabilities) and on tokens."""

    p_429: float = 0.0
    p_5xx: float = 0.0
    p_slow: float = 0.0
    slow_seconds: tuple[float, float] = (0.5, 3.0)
    p_shift: float = 0.0
    token_expiry: float | None = None  # tokens die this soon, whatever expires_in said


NO_FAULTS: Final = Faults()
API_FAULTS: Final = Faults(p_429=0.1, p_5xx=0.08, p_slow=0.1, p_shift=0.3, token_expiry=120.0)


def faults_for(scenario: str) -> Faults:
    """The faults a scenario injects."""
    return API_FAULTS if scenario == "api_faults" else NO_FAULTS


def streams(total_rate: float = ARRIVALS_PER_SECOND) -> tuple[Stream, ...]:
    """Arrival streams for every work type and email type."""
    return tuple(
        Stream(wt, email_type, total_rate * wt_share * type_share)
        for wt, wt_share in zip(WORK_TYPES, _WORK_TYPE_SHARE, strict=True)
        for email_type, type_share in _EMAIL_TYPE_SHARE
    )


def steady_params(speed: float) -> ModelParams:
    """About 150 emails waiting, held there by agents logging on and off."""
    return ModelParams(
        work_types=WORK_TYPES,
        streams=streams(),
        agents=140,
        agents_on_duty=100,
        staffing=Staffing(minimum=40, maximum=140, target=150),
        speed=speed,
    )


def build_model(scenario: str, rng: random.Random, now: float, speed: float) -> QueueModel:
    """A model of `scenario` whose queue is already in motion at `now`."""
    if scenario == "agent_outage":
        return _outage(rng, now, speed)
    if scenario == "sla":
        return _sla(rng, now, speed)
    if scenario not in SCENARIOS or scenario == "large":
        raise ValueError(f"not a dynamic scenario: {scenario!r}")
    start = now - _WARMUP / speed
    model = QueueModel(steady_params(speed), rng, start)
    for i in range(150):
        wt, email_type = _pick(rng)
        queued = start - (150 - i) * 8.0 / speed
        model.inject(_backlog(model, rng, wt, email_type, queued, "Queued", None, start))
    model.advance_to(now)
    if scenario == "surge":
        model.retune(arrival_factor=3.0, staffing=None)
    return model


def _outage(rng: random.Random, now: float, speed: float) -> QueueModel:
    """No agent at all: a backlog up to six hours old that only grows."""
    params = ModelParams(
        work_types=WORK_TYPES,
        streams=streams(),
        agents=0,
        agents_on_duty=0,
        supervisors=0,
        speed=speed,
    )
    model = QueueModel(params, rng, now)
    gone = make_agents(rng, 20, "9")  # agents who were working before the outage
    count = 400
    for i in range(count):
        queued = now - 6 * HOUR * (1 - i / count) ** 2  # older emails are fewer
        wt, email_type = _pick(rng, outbound_manual=False)
        age = now - queued
        roll = rng.random()
        if age < 300:
            state = "Queued"
        elif roll < 0.1 and age > HOUR:
            state = rng.choice(("Draft", "Review", "Transferred"))
        elif roll < 0.25:
            state = "Reassigned"
        else:
            state = "Queued2"
        email = _backlog(model, rng, wt, email_type, queued, state, rng.choice(gone), now)
        model.inject(email)
    model.retune(arrival_factor=0.5, staffing=None)
    return model


def sla_target(work_type_name: str) -> float:
    """The `sla` scenario's target for a work type."""
    return SLA_TARGETS.get(work_type_name, SLA_DEFAULT_TARGET)


def _sla(rng: random.Random, now: float, speed: float) -> QueueModel:
    """Too few agents and a waiting backlog whose first email breaches a minute (/ speed) from now.

    The backlog's breaches are spread over the next ten minutes (/ speed) on a continuous clock:
    nothing is breached at the start, so an early warning can be seen to come before the first
    breach. Arrivals keep coming, so some emails are picked up in time and some are not.
    No email is transferred back to a queue: a pickup undone within one poll interval cannot
    be seen by polling (docs/metrics.md, "Pickups"), and this scenario's truth is meant to be observable.
    """
    params = ModelParams(
        work_types=WORK_TYPES,
        streams=streams(),
        agents=100,
        agents_on_duty=10,
        staffing=Staffing(minimum=10, maximum=100, target=40),
        speed=speed,
        p_transfer=0.0,
    )
    model = QueueModel(params, rng, now)
    for i in range(SLA_BACKLOG):
        wt, email_type = _pick(rng, outbound_manual=False)
        target = sla_target(wt.name)
        due_in = min((60.0 + 540.0 * i / SLA_BACKLOG) / speed, 0.95 * target)
        queued = now - target + due_in
        model.inject(_backlog(model, rng, wt, email_type, queued, "Queued", None, now))

    def in_progress() -> Email:
        """An email an agent took just now (queued a little earlier); not a pickup to judge."""
        wt, email_type = _pick(rng, outbound_manual=False)
        queued = now - rng.uniform(60.0, 600.0) / speed
        email = _backlog(model, rng, wt, email_type, queued, "Active", None, now)
        email.last_modified = now
        return email

    model.occupy_idle_agents(in_progress)
    return model


def _pick(rng: random.Random, *, outbound_manual: bool = True) -> tuple[WorkType, str]:
    wt = rng.choices(WORK_TYPES, weights=_WORK_TYPE_SHARE)[0]
    types = [t for t in _EMAIL_TYPE_SHARE if outbound_manual or t[0] != "ManualOutboundEmail"]
    email_type = rng.choices([t for t, _ in types], weights=[w for _, w in types])[0]
    return wt, email_type


def _backlog(
    model: QueueModel,
    rng: random.Random,
    wt: WorkType,
    email_type: str,
    queued: float,
    state: str,
    agent: Agent | None,
    now: float,
) -> Email:
    """An email queued at `queued` that has reached `state` since, with a consistent history."""
    email = new_email(
        rng,
        email_id=model.next_id(),
        seq=model.next_seq(),
        work_type=wt,
        email_type=email_type,
        now=queued,
        state=state,
    )
    if state in ("Draft", "Review", "Transferred"):
        # These went through an agent first: active a little after queueing, modified later.
        email.active = queued + rng.uniform(60, 600)
        email.last_modified = email.active + rng.uniform(60, 900)
        email.agent = None if state == "Transferred" else agent
        if state == "Draft":
            email.reply_object_id = object_id(rng, email.last_modified, wt.id, 1)
    elif state != "Queued":
        email.last_modified = queued + rng.uniform(300, 900)
    email.last_modified = min(email.last_modified, now)
    return email
