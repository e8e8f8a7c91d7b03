"""When things happened to an email, read from its timestamps: one home for each dating rule.

- `parse_timestamp`: ISO 8601 text (or a datetime the page decoder parsed) to Unix time.
- `queued_at`: an email waits from its `queuedTime`, else its `receivedTime`, else its
  `startTime` (SPEC §4); None when none is usable (the email is counted as undated).
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
