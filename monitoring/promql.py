"""PromQL fragments built from the configuration: selectors, replica-safe aggregation, thresholds."""

from __future__ import annotations

from monitoring.config import Config, Threshold

PREFIX = "alvaria_emailqueue"
# The labels that name one organisation polled by one exporter process.
TARGET = "job, instance, org"
# The labels of a queue group once the replicas are aggregated away.
GROUP = "org_work_type_email_type"


def metric(name: str) -> str:
    """The full name of one of the exporter's metrics."""
    return f"{PREFIX}_{name}"


def sel(config: Config, *matchers: str) -> str:
    """A label selector: the job matcher plus `matchers`."""
    return "{" + ", ".join((config.job_selector, *matchers)) + "}"


def raw(config: Config, name: str, *matchers: str) -> str:
    """One of the exporter's series, selected by job (and `matchers`)."""
    return metric(name) + sel(config, *matchers)


def one_replica(config: Config, expr: str) -> str:
    """`expr` with the HA replicas (and rollouts) of one exporter collapsed: max, never sum."""
    return f"max without ({', '.join(config.replica_labels)}) ({expr})"


def waiting_matcher(config: Config) -> str:
    """The matcher of the states in which an email waits for an agent."""
    return f'state=~"{config.waiting_regex()}"'


def alert_types(config: Config) -> str:
    """The matcher of the email types the queue and service-level alerts judge."""
    return f'email_type=~"{"|".join(config.alert_email_types)}"'


def group_rule(name: str) -> str:
    """The name of a per-group recording rule."""
    return f"{GROUP}:{PREFIX}_{name}"


def matchers(match: tuple[tuple[str, str], ...]) -> str:
    """`{label=~"regex", ...}` for an override."""
    return "{" + ", ".join(f'{label}=~"{regex}"' for label, regex in match) + "}"


def number(value: float) -> str:
    """A number as PromQL writes it (no trailing .0)."""
    return str(int(value)) if value == int(value) else repr(value)


def threshold(value: Threshold, *bases: str) -> str:
    """One series per group of `bases` holding its threshold: overrides first, then the default.

    `N + 0 * base{...}` keeps the group's labels and sets its value; `or` adds only the groups the
    left side lacks, so the first override that matches a group wins.
    """

    def groups(match: tuple[tuple[str, str], ...]) -> str:
        selected = [base + (matchers(match) if match else "") for base in bases]
        return selected[0] if len(selected) == 1 else "(" + " or ".join(selected) + ")"

    terms = [f"{number(o.value)} + 0 * {groups(o.match)}" for o in value.overrides]
    terms.append(f"{number(value.default)} + 0 * {groups(())}")
    return "\nor\n".join(terms)


def with_fallback(config: Config, name: str, fallback: float) -> str:
    """The exporter's own setting series `name`, or `fallback` for an exporter that lacks it."""
    up = raw(config, "up")
    return f"({raw(config, name)} or on ({TARGET}) (0 * {up} + {number(fallback)}))"


def poll_interval(config: Config) -> str:
    """Each target's poll interval in seconds."""
    return with_fallback(config, "poll_interval_seconds", config.fallback_poll_interval_seconds)


def stale_after(config: Config) -> str:
    """Each target's stale_after in seconds."""
    return with_fallback(config, "stale_after_seconds", config.fallback_stale_after_seconds)
