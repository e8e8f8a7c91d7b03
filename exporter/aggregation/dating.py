"""When things happened to an email, read from its timestamps: one home for each dating rule.

- `parse_timestamp`: ISO 8601 text (or a datetime the page decoder parsed) to Unix time.
- `queued_at`: an email waits from its `queuedTime`, else its `receivedTime`, else its
  `startTime` (SPEC §4); None when none is usable (the email is counted as undated).
- `received_at`: the customer's wait for an answer counts from `receivedTime`, else
  `queuedTime` (SPEC §10, resolution).
- `delivery_lag`: `receivedTime` - `sentTime`, negative as 0; None without both.
- `handling_start`: `activeTime` when it is not earlier than the queue time (and not after the
  poll), else the poll that first saw the email in a handling state (SPEC §10).

Every other event (a state change, a departure) is dated by the first successful poll that sees
it: the poll's own time, passed in as `now`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from exporter.domain.models import Email


def parse_timestamp(value: str | datetime | None) -> float | None:
    """Unix time of an ISO 8601 timestamp (`Z`, offsets, fractions); naive means UTC; else None."""
    if not value:
        return None
    if isinstance(value, datetime):
        parsed = value
        return (parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed).timestamp()
    try:
        parsed = datetime.fromisoformat(value)
    except (ValueError, TypeError):
        # RFC 3339 also allows a lower-case `z` and `t`, and stray whitespace; rare, so only
        # normalised when the fast path fails.
        try:
            parsed = datetime.fromisoformat(str(value).strip().upper())
        except (ValueError, TypeError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def queued_at(email: Email) -> float | None:
    """When the email started waiting: queuedTime, else receivedTime, else startTime."""
    for value in (email.queued_time, email.received_time, email.start_time):
        ts = parse_timestamp(value)
        if ts is not None:
            return ts
    return None


def received_at(email: Email) -> float | None:
    """When the customer's email arrived: receivedTime, else queuedTime."""
    for value in (email.received_time, email.queued_time):
        ts = parse_timestamp(value)
        if ts is not None:
            return ts
    return None


def delivery_lag(email: Email) -> float | None:
    """Seconds from sentTime to receivedTime (a negative lag, from skewed clocks, is 0)."""
    received = parse_timestamp(email.received_time)
    if received is None:
        return None
    sent = parse_timestamp(email.sent_time)
    if sent is None:
        return None
    return max(0.0, received - sent)


def handling_start(email: Email, now: float) -> float:
    """When handling of an email seen in a handling state for the first time at `now` began:
    its activeTime when that is not earlier than its queue time (never later than `now`),
    else `now`."""
    active = parse_timestamp(email.active_time)
    if active is not None:
        queued = queued_at(email)
        if queued is not None and queued <= active:
            return min(active, now)
    return now
