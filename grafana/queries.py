"""Label selectors and PromQL fragments the dashboards share."""

from __future__ import annotations

# The exporter's default waiting_states; keep in step with deploy/prometheus/rules.
WAITING = 'state=~"Queued|Queued2|Transferred|Reassigned"'

# Every variable is multi-value with "All" = ".*", so `=~` works for one, several or all.
EXPORTER = 'job=~"$job", org=~"$org"'
QUEUE = f'{EXPORTER}, work_type=~"$work_type", email_type=~"$email_type"'
# Recording rules aggregate email types away: they take every filter but that one.
QUEUE_RULES = f'{EXPORTER}, work_type=~"$work_type"'

RATE = "[$__rate_interval]"

# Rates are shown per minute: a queue moves a few emails a minute, not per second.
PER_MINUTE = "60 * "


def rate_sum(metric: str, selector: str, by: str) -> str:
    """`sum by (by) (rate(metric{selector}[$__rate_interval]))`."""
    return f"sum by ({by}) (rate({metric}{{{selector}}}{RATE}))"


def zero_per_org() -> str:
    """One zero series per selected organisation, to fill counters that never incremented."""
    return f"sum by (org) (0 * alvaria_emailqueue_up{{{EXPORTER}}})"


def per_minute_or_zero(metric: str, selector: str, by: str) -> str:
    """A per-minute rate by `by`, or zero for organisations where the counter has no series."""
    return f"{PER_MINUTE}{rate_sum(metric, selector, by)} or on (org) {zero_per_org()}"


def waiting(by: str) -> str:
    """Emails waiting for an agent, summed by `by`."""
    return f"sum by ({by}) (alvaria_emailqueue_emails{{{QUEUE}, {WAITING}}})"


def flow_or_zero(metric: str, by: str) -> str:
    """A flow rate by `by`, zero where the counter has no series yet but emails wait."""
    return f"({rate_sum(metric, QUEUE, by)} or 0 * {waiting(by)})"
