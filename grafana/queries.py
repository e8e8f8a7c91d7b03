"""Label selectors and PromQL fragments the dashboards share."""

from __future__ import annotations

from monitoring.config import CONFIG, Config


def waiting_matcher(config: Config = CONFIG) -> str:
    """The states of emails waiting for an agent, from the monitoring configuration."""
    return f'state=~"{config.waiting_regex()}"'


def job_values(config: Config = CONFIG) -> str:
    """The `job` variable's query: the jobs the alert rules select too."""
    return f"label_values(alvaria_emailqueue_up{{{config.job_selector}}}, job)"


# Every variable is multi-value with "All" = ".*", so `=~` works for one, several or all.
EXPORTER = 'job=~"$job", org=~"$org"'
QUEUE = f'{EXPORTER}, work_type=~"$work_type", email_type=~"$email_type"'
# The queue recording rules keep every label the filters use.
QUEUE_RULES = QUEUE

RATE = "[$__rate_interval]"
# Net backlog change and time to drain divide or subtract flows that the exporter sees once
# per poll; over $__rate_interval (a few polls) they jump in steps. A fixed 15m window is
# smooth enough to read and still recent, like the recording rules' fixed windows.
FLOW_WINDOW = "[15m]"

# Rates are shown per minute: a queue moves a few emails a minute, not per second.
PER_MINUTE = "60 * "


def one_replica(expr: str, config: Config = CONFIG) -> str:
    """`expr` with the replicas of one exporter collapsed into one series each.

    Two HA replicas scraped under one job report the same queue; under Kubernetes `instance` is
    the pod IP. Queue panels take the max across replicas before adding anything up.
    """
    return f"max without ({', '.join(config.replica_labels)}) ({expr})"


def rate_sum(metric: str, selector: str, by: str) -> str:
    """`sum by (by) (rate(metric{selector}[$__rate_interval]))`: per-process counters (API load)."""
    return f"sum by ({by}) (rate({metric}{{{selector}}}{RATE}))"


def queue_rate_sum(metric: str, by: str, window: str = RATE, config: Config = CONFIG) -> str:
    """A queue counter's rate by `by`: the max of the replicas' rates, never their sum."""
    return f"sum by ({by}) ({one_replica(f'rate({metric}{{{QUEUE}}}{window})', config)})"


def queue_sum(metric: str, by: str, selector: str = QUEUE, config: Config = CONFIG) -> str:
    """A queue gauge added up by `by`, each replica counted once."""
    return f"sum by ({by}) ({one_replica(f'{metric}{{{selector}}}', config)})"


def queue_max(metric: str, by: str, selector: str, config: Config = CONFIG) -> str:
    """The largest value of a queue gauge by `by`."""
    return f"max by ({by}) ({one_replica(f'{metric}{{{selector}}}', config)})"


def zero_per_org() -> str:
    """One zero series per selected organisation, to fill counters that never incremented."""
    return f"sum by (org) (0 * alvaria_emailqueue_up{{{EXPORTER}}})"


def per_minute_or_zero(metric: str, selector: str, by: str) -> str:
    """A per-minute rate by `by`, or zero for organisations where the counter has no series."""
    return f"{PER_MINUTE}{rate_sum(metric, selector, by)} or on (org) {zero_per_org()}"


def waiting(by: str, config: Config = CONFIG) -> str:
    """Emails waiting for an agent, summed by `by`."""
    selector = f"{QUEUE}, {waiting_matcher(config)}"
    return queue_sum("alvaria_emailqueue_emails", by, selector, config)


def flow_or_zero(metric: str, by: str, window: str = RATE, config: Config = CONFIG) -> str:
    """A flow rate by `by`, zero where the counter has no series yet but emails wait."""
    return f"({queue_rate_sum(metric, by, window, config)} or 0 * {waiting(by, config)})"
