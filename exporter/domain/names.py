"""Metric names, label names and the API's documented enumerations: the public contract."""

from __future__ import annotations

from typing import Final

PREFIX: Final = "alvaria_emailqueue"

# Queue state
EMAILS: Final = f"{PREFIX}_emails"
OLDEST_EMAIL_TIMESTAMP: Final = f"{PREFIX}_oldest_email_timestamp_seconds"
OLDEST_EMAIL_AGE: Final = f"{PREFIX}_oldest_email_age_seconds"
WAITING_EMAIL_AGE: Final = f"{PREFIX}_waiting_email_age_seconds"
AGENT_EMAILS: Final = f"{PREFIX}_agent_emails"

# Service levels (SPEC §6)
SERVICE_LEVEL_TARGET: Final = f"{PREFIX}_service_level_target_seconds"
SERVICE_LEVEL_BREACHED: Final = f"{PREFIX}_service_level_breached_emails"
SERVICE_LEVEL_AT_RISK: Final = f"{PREFIX}_service_level_at_risk_emails"
SERVICE_LEVEL_NEXT_BREACH: Final = f"{PREFIX}_service_level_next_breach_timestamp_seconds"
PICKUP_WAIT: Final = f"{PREFIX}_pickup_wait_seconds"
PICKUPS: Final = f"{PREFIX}_pickups"  # counter: _total is added on exposition
SERVICE_LEVEL_OUTCOMES: Final[tuple[str, ...]] = ("met", "missed")

# Flow (counter names without the `_total` suffix, as prometheus_client wants them)
ARRIVALS: Final = f"{PREFIX}_arrivals"
DEPARTURES: Final = f"{PREFIX}_departures"
STATE_TRANSITIONS: Final = f"{PREFIX}_state_transitions"

# The exporter itself
UP: Final = f"{PREFIX}_up"
LAST_POLL_SUCCESS: Final = f"{PREFIX}_last_poll_success_timestamp_seconds"
LAST_POLL_DURATION: Final = f"{PREFIX}_last_poll_duration_seconds"
POLLS: Final = f"{PREFIX}_polls"
POLL_ERRORS: Final = f"{PREFIX}_poll_errors"
API_REQUESTS: Final = f"{PREFIX}_api_requests"
API_REQUEST_DURATION: Final = f"{PREFIX}_api_request_duration_seconds"
API_REPORTED_ITEMS: Final = f"{PREFIX}_api_reported_items"
DUPLICATE_ITEMS: Final = f"{PREFIX}_duplicate_items"
INVALID_ITEMS: Final = f"{PREFIX}_invalid_items"
LABEL_OVERFLOW: Final = f"{PREFIX}_label_overflow"
TOKEN_EXPIRY: Final = f"{PREFIX}_token_expiry_timestamp_seconds"
BUILD_INFO: Final = f"{PREFIX}_exporter_build_info"
POLL_INTERVAL: Final = f"{PREFIX}_poll_interval_seconds"
STALE_AFTER: Final = f"{PREFIX}_stale_after_seconds"
SERIES: Final = f"{PREFIX}_series"

# The API's own limits (SPEC §11): its rate-limit headers, per org and endpoint, and the expiry of
# the certificate its host presented
API_RATE_LIMIT_LIMIT: Final = f"{PREFIX}_api_rate_limit_limit"
API_RATE_LIMIT_REMAINING: Final = f"{PREFIX}_api_rate_limit_remaining"
API_RATE_LIMIT_RESET: Final = f"{PREFIX}_api_rate_limit_reset_timestamp_seconds"
API_CERTIFICATE_EXPIRY: Final = f"{PREFIX}_api_certificate_expiry_timestamp_seconds"

# The exporter's own HTTP server (exporter/web/connections.py)
HTTP_CONNECTIONS: Final = f"{PREFIX}_http_connections"
HTTP_MAX_CONNECTIONS: Final = f"{PREFIX}_http_max_connections"
HTTP_CONNECTIONS_REJECTED: Final = f"{PREFIX}_http_connections_rejected"
HTTP_AUTH_BUSY: Final = f"{PREFIX}_http_auth_busy"
HTTP_METRICS_BUSY: Final = f"{PREFIX}_http_metrics_busy"
# `reason` of http_connections_rejected_total, reported from zero.
CONNECTION_REJECT_REASONS: Final[tuple[str, ...]] = (
    "max_connections",
    "header_timeout",
    "accept_failed",
    "write_timeout",
)

# Fleet: shards, reload and the per-key request rate limit (SPEC §8)
SHARD_ORDINAL: Final = f"{PREFIX}_shard_ordinal"
TOTAL_SHARDS: Final = f"{PREFIX}_total_shards"
TARGETS: Final = f"{PREFIX}_targets"
CONFIG_LAST_RELOAD_SUCCESSFUL: Final = f"{PREFIX}_config_last_reload_successful"
CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP: Final = (
    f"{PREFIX}_config_last_reload_success_timestamp_seconds"
)
RATE_LIMIT_WAIT: Final = f"{PREFIX}_rate_limit_wait_seconds"
RATE_LIMIT_OVERRUNS: Final = f"{PREFIX}_rate_limit_overrun_polls"

# Label values
UNKNOWN: Final = "unknown"
OTHER: Final = "other"
# `reason` of invalid_items_total and `label` of label_overflow_total, reported from zero.
INVALID_REASONS: Final[tuple[str, ...]] = ("missing_id", "not_object")
OVERFLOW_LABELS: Final[tuple[str, ...]] = ("agent", "email_type", "state", "work_type")

# The API's documented enumerations (alvaria-emailqueue-api.md, EmailItem).
STATES: Final[tuple[str, ...]] = (
    "Invalid",
    "Queued",
    "Queued2",
    "Active",
    "Wrap",
    "Review",
    "ReviewActive",
    "Draft",
    "DraftActive",
    "Transferred",
    "TransferredActive",
    "Reassigned",
    "ReassignedDraft",
    "ReassignedActive",
)
# The states in which an email waits for an agent (the `waiting_states` setting's default): the
# queue's age gauges, service levels, pickups and the shipped rules all start from these.
DEFAULT_WAITING_STATES: Final[tuple[str, ...]] = ("Queued", "Queued2", "Transferred", "Reassigned")
EMAIL_TYPES: Final[tuple[str, ...]] = (
    "InboundEmail",
    "ManualOutboundEmail",
    "CampaignOutboundEmail",
)

# Label sets shared by many families, and the note their HELP texts end with.
GROUP_LABELS: Final[tuple[str, ...]] = ("org", "state", "email_type", "work_type")
PAIR_LABELS: Final[tuple[str, ...]] = ("org", "email_type", "work_type")
FROM_LAST_POLL: Final = " (from the last successful poll)."
