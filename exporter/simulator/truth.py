"""Ground truth of the simulated queue for tests and demos: `GET /_sim/truth` (not the fake API).

What really happened, straight from the model rather than from the API's items: every pickup
(an agent taking a waiting email, with the instant it happened) and the emails waiting now.
With `?since=` only pickups after that Unix time are listed; with `?warning=` (seconds) the
summary per group judges them against the `sla` scenario's targets on a continuous clock:
picked up in time or not, waiting emails past their target, breaching within `warning`, and the
next breach instant.

For the handling KPIs (SPEC §10, `handling`): every departure after `since` (its true handling
start, departure time and last state), every stay that ended after `since`, the delivery lags
and repeat contacts of emails that arrived after it, the agents working now (counts only, no
identity) and the full record of each email present now or departed after `since`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .entities import WAITING
from .history import Life, handling, life_json
from .model import QueueModel
from .scenarios import sla_target


def truth(model: QueueModel, now: float, since: float, warning: float) -> dict[str, Any]:
    """Pickups after `since`, waiting emails at `now`, and their service-level summary."""
    model.advance_to(now)
    names = model.work_type_names
    pickups: list[dict[str, Any]] = [
        {
            "id": str(event.email_id),
            "emailType": event.email_type,
            "workType": names.get(event.work_type_id, event.work_type_id),
            "queued": event.queued,
            "active": event.at,
        }
        for event in model.pickup_log
        if event.at > since
    ]
    waiting: list[dict[str, Any]] = [
        {
            "id": str(email.id),
            "emailType": email.email_type,
            "workType": names.get(email.work_type_id, email.work_type_id),
            "queued": email.queued,
        }
        for email in model.emails.values()
        if email.state in WAITING
    ]
    groups: dict[str, dict[str, Any]] = {}

    def group(item: dict[str, Any]) -> dict[str, Any]:
        key = f"{item['emailType']}/{item['workType']}"
        empty = {"met": 0, "missed": 0, "breached": 0, "at_risk": 0, "next_breach": None}
        return groups.setdefault(key, {"emailType": item["emailType"],
                                       "workType": item["workType"], **empty})  # fmt: skip

    first: Counter[str] = Counter()
    for item in pickups:
        first[item["id"]] += 1
        if first[item["id"]] == 1:  # each email counts once: its first pickup
            met = item["active"] - item["queued"] < sla_target(item["workType"])
            group(item)["met" if met else "missed"] += 1
    for item in waiting:
        due = item["queued"] + sla_target(item["workType"])
        entry = group(item)
        if due <= now:
            entry["breached"] += 1
        else:
            entry["at_risk"] += due <= now + warning
            if entry["next_breach"] is None or due < entry["next_breach"]:
                entry["next_breach"] = due
    return {
        "now": now,
        "pickups": pickups,
        "waiting": waiting,
        "groups": list(groups.values()),
        **handling_truth(model, since),
    }


def handling_truth(model: QueueModel, since: float) -> dict[str, Any]:
    """The handling KPIs' ground truth after `since` (see the module docstring)."""
    names = model.work_type_names
    ledger = model.ledger
    gone = [life for life in ledger.departed if life.departed is not None and life.departed > since]
    lives: list[Life] = [*gone, *ledger.present.values()]
    records = [life_json(life, names) for life in lives]
    departures = [
        {k: r[k] for k in ("id", "emailType", "workType", "handlingStart", "departed", "lastState",
                           "received")}
        for r in records[: len(gone)]
    ]  # fmt: skip
    stays = [
        {"id": r["id"], "emailType": r["emailType"], **stay}
        for r in records
        for stay in r["stays"]
        if stay["ended"] is not None and stay["ended"] > since
    ]
    lags = [
        {"id": r["id"], "emailType": r["emailType"], "at": r["arrived"],
         "lag": max(0.0, r["received"] - r["sent"])}
        for r in records
        if not r["injected"] and r["arrived"] > since
    ]  # fmt: skip
    repeats = [
        {"id": str(rep.email_id), "emailType": rep.email_type,
         "workType": names.get(rep.work_type_id, rep.work_type_id), "at": rep.at,
         "thread": str(rep.thread_id), "previousDeparture": rep.previous_departure}
        for rep in ledger.repeats
        if rep.at > since
    ]  # fmt: skip
    loads = Counter(
        email.agent.id
        for email in model.emails.values()
        if email.agent is not None and handling(email.state)
    )
    return {
        "departures": departures,
        "stays": stays,
        "deliveryLags": lags,
        "repeatContacts": repeats,
        "agentsWorking": len(loads),
        "agentLoads": sorted(loads.values()),
        "emails": records,
    }
