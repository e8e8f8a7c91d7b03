"""Work types, agents and emails of the simulated contact centre, and their API representation."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Final

# Documented transitions between states; None stands for "not in the queue" (arrival or departure).
ALLOWED_TRANSITIONS: Final[dict[str | None, frozenset[str | None]]] = {
    None: frozenset({"Queued", "Active", "Draft"}),
    "Queued": frozenset({"Queued2", "Active", "Reassigned"}),
    "Queued2": frozenset({"Active", "Reassigned"}),
    "Active": frozenset({"Wrap", "Draft", "Review", "Transferred"}),
    "Wrap": frozenset({None}),
    "Draft": frozenset({"DraftActive", "ReassignedDraft"}),
    "ReassignedDraft": frozenset({"DraftActive"}),
    "DraftActive": frozenset({"Wrap"}),
    "Review": frozenset({"ReviewActive"}),
    "ReviewActive": frozenset({None}),
    "Transferred": frozenset({"TransferredActive"}),
    "TransferredActive": frozenset({"Wrap"}),
    "Reassigned": frozenset({"ReassignedActive"}),
    "ReassignedActive": frozenset({"Wrap"}),
}
INBOUND: Final = "InboundEmail"
# Emails in these states wait in a work-type queue for any agent.
WAITING: Final = frozenset({"Queued", "Queued2", "Transferred", "Reassigned"})
# On pick-up, a waiting email goes to its "active" counterpart.
PICKUP_STATE: Final = {
    "Queued": "Active",
    "Queued2": "Active",
    "Transferred": "TransferredActive",
    "Reassigned": "ReassignedActive",
}

SUBJECTS: Final = (
    "Follow-up email to confirm my appointment",
    "Question about my last invoice",
    "Where is my order?",
    "Refund request",
    "Cannot log in to my account",
    "Change of address",
    "Réclamation concernant ma commande",
    "Frage zur Rechnung",
    "Cancel my subscription",
    "Thank you!",
)
FIRST_NAMES: Final = (
    "jane",
    "john",
    "maria",
    "ahmed",
    "li",
    "sofia",
    "lukas",
    "amara",
    "noah",
    "eva",
)
LAST_NAMES: Final = ("doe", "smith", "garcía", "müller", "nguyen", "okafor", "rossi", "kim", "berg")


@dataclass(frozen=True, slots=True)
class WorkType:
    """A queue of the contact centre."""

    id: str
    name: str
    address: str


@dataclass(frozen=True, slots=True)
class Agent:
    """A user who handles emails."""

    id: str
    name: str


@dataclass(slots=True)
class Email:
    """One email instance in the queue; times are Unix seconds."""

    id: int
    thread_id: int
    um_id: str
    interaction_id: int
    work_type_id: str
    email_type: str
    state: str
    sent: float
    received: float
    start: float
    queued: float
    last_modified: float
    seq: int
    email_object_id: str
    from_address: str
    to_address: str
    subject: str
    active: float | None = None
    agent: Agent | None = None
    reply_object_id: str | None = None


def iso(ts: float) -> str:
    """Format Unix seconds as `2019-04-15T18:41:40.874Z`."""
    ms = int(ts * 1000)
    secs, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{millis:03d}Z"


def make_agents(rng: random.Random, count: int, prefix: str = "") -> list[Agent]:
    """Agents with hex-like ids and "last, first" names."""
    agents = []
    for i in range(count):
        name = f"{rng.choice(LAST_NAMES)}, {rng.choice(FIRST_NAMES)}"
        agents.append(Agent(id=f"{prefix}{rng.getrandbits(56):014x}{i % 16:x}", name=name))
    return agents


def object_id(rng: random.Random, ts: float, work_type_id: str, part: int) -> str:
    """An `email/1c8e-20190415-184140/111-0` style storage key."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(int(ts)))
    return f"email/{rng.getrandbits(16):04x}-{stamp}/{work_type_id}-{part}"


def um_id(ts: float, serial: int) -> str:
    """A `01-0010010000-190415-184140862-00034` style Universal Media ID."""
    ms = int(ts * 1000) % 1000
    stamp = time.strftime("%y%m%d-%H%M%S", time.gmtime(int(ts)))
    return f"01-0010010000-{stamp}{ms:03d}-{serial % 100000:05d}"


def new_email(
    rng: random.Random,
    *,
    email_id: int,
    seq: int,
    work_type: WorkType,
    email_type: str,
    now: float,
    state: str = "Queued",
) -> Email:
    """A fresh email that entered the queue at `now`, with a history consistent with it."""
    received = float(int(now))
    customer = f"customer{rng.randrange(100000):05d}@example.com"
    inbound = email_type == "InboundEmail"
    return Email(
        id=email_id,
        thread_id=247_958_000 + email_id * 7,
        um_id=um_id(now, email_id),
        interaction_id=5_000 + email_id,
        work_type_id=work_type.id,
        email_type=email_type,
        state=state,
        sent=received - rng.randrange(1, 600) if inbound else received,
        received=received,
        start=now,
        queued=now,
        last_modified=now,
        seq=seq,
        email_object_id=object_id(rng, now, work_type.id, 0),
        from_address=customer if inbound else work_type.address,
        to_address=work_type.address if inbound else customer,
        subject=rng.choice(SUBJECTS),
    )


def to_item(email: Email, work_type_names: dict[str, str], extended: bool) -> dict[str, Any]:
    """The documented EmailItem for an email; absent values are left out."""
    item: dict[str, Any] = {
        "id": str(email.id),
        "threadId": str(email.thread_id),
        "umId": email.um_id,
        "contactId": str(email.interaction_id),
        "interactionId": str(email.interaction_id),
        "workTypeId": email.work_type_id,
    }
    if email.agent is not None:
        item["workHandlerId"] = email.agent.id
    item["sentTime"] = iso(email.sent)
    item["receivedTime"] = iso(email.received)
    item["startTime"] = iso(email.start)
    item["queuedTime"] = iso(email.queued)
    if email.active is not None:
        item["activeTime"] = iso(email.active)
    item["lastModifiedTime"] = iso(email.last_modified)
    # int64 travels as a string, like the ids (the reference's examples show "77143977").
    item["eventSequenceNumber"] = str(email.seq)
    item["state"] = email.state
    item["emailType"] = email.email_type
    item["emailObjectId"] = email.email_object_id
    if email.reply_object_id is not None:
        item["replyEmailObjectId"] = email.reply_object_id
    item["fromAddress"] = email.from_address
    item["toAddress"] = email.to_address
    item["subject"] = email.subject
    if extended:
        if email.agent is not None:
            item["workHandlerName"] = email.agent.name
        item["workTypeName"] = work_type_names.get(email.work_type_id, email.work_type_id)
    return item
