"""Recording rules: the per-group aggregates the alerts and dashboards share.

Naming follows the Prometheus convention level:metric:operations. Queue aggregates drop the
replica labels (`instance`, `pod`): two HA replicas report the same queue, so each aggregate
first sums within one target and then takes the max across targets, never the sum; and under
Kubernetes `instance` is the pod IP, so keeping it would turn every rollout into new alerts.
They keep `job`, `org`, `work_type` and `email_type` (and other target labels).
"""

from __future__ import annotations

from typing import Any

from monitoring import promql as q
from monitoring.config import Config
from monitoring.durations import seconds

Rule = dict[str, Any]

WAITING = q.group_rule("waiting_emails:sum")
OLDEST = q.group_rule("oldest_waiting_email_age_seconds:max")
TARGET_SECONDS = q.group_rule("service_level_target_seconds:max")
BACKLOG_THRESHOLD = q.group_rule("waiting_emails:threshold")
OBJECTIVE = q.group_rule("service_level:objective")
RATE_LIMITED = "org:alvaria_emailqueue_api_requests_rate_limited:ratio_rate5m"


def window_name(kind: str, window: str) -> str:
    """The name of a rule computed over `window`, e.g. `..._pickups:increase30m`."""
    return q.group_rule(f"{kind}{window}")


def missed_ratio(window: str) -> str:
    """Share of picked-up emails that missed their target over `window`."""
    return window_name("pickups_missed:ratio_rate", window)


def pickups(window: str) -> str:
    """Picked-up emails over `window`."""
    return window_name("pickups:increase", window)


def _rule(record: str, expr: str) -> Rule:
    return {"record": record, "expr": expr.strip() + "\n"}


def _queue(config: Config) -> list[Rule]:
    waiting = q.waiting_matcher(config)
    emails = q.raw(config, "emails", waiting)
    oldest = q.raw(config, "oldest_email_age_seconds", waiting)
    buckets = q.raw(config, "waiting_email_age_seconds_bucket")
    arrivals = q.raw(config, "arrivals_total")
    departures = q.raw(config, "departures_total")
    age_sum = "org_work_type:alvaria_emailqueue_waiting_email_age_seconds_bucket:sum"
    rules = [
        _rule(WAITING, q.one_replica(config, f"sum without (state) ({emails})")),
        _rule(OLDEST, q.one_replica(config, f"max without (state) ({oldest})")),
        _rule(age_sum, q.one_replica(config, f"sum without (email_type) ({buckets})")),
    ]
    for quantile in (50, 90):
        rules.append(
            _rule(
                f"org_work_type:alvaria_emailqueue_waiting_email_age_seconds:p{quantile}",
                f"histogram_quantile({quantile / 100}, {age_sum})",
            )
        )
    rules += [
        _rule(window_name("arrivals:rate", "5m"), q.one_replica(config, f"rate({arrivals}[5m])")),
        _rule(
            window_name("departures:rate", "5m"),
            q.one_replica(config, f"sum without (state) (rate({departures}[5m]))"),
        ),
        _rule(
            window_name("waiting_emails:deriv", config.backlog_growing_window),
            f"deriv({WAITING}[{config.backlog_growing_window}])",
        ),
    ]
    return rules


def _thresholds(config: Config) -> list[Rule]:
    target = q.raw(config, "service_level_target_seconds")
    fallback = config.fallback_service_level_target_seconds
    return [
        _rule(BACKLOG_THRESHOLD, q.threshold(config.backlog_high, WAITING)),
        _rule(
            TARGET_SECONDS,
            f"{q.one_replica(config, target)}\nor\n{q.number(fallback)} + 0 * {WAITING}",
        ),
        # Per group of either kind: a group can have pickups after its waiting series expired.
        _rule(
            OBJECTIVE,
            q.threshold(
                config.service_level_objective,
                WAITING,
                pickups(burn_windows(config)[-1]),
            ),
        ),
    ]


def burn_windows(config: Config) -> list[str]:
    """Every window the burn-rate alerts use, shortest first."""
    windows = {w for b in config.burn_windows for w in (b.long, b.short)}
    return sorted(windows, key=seconds)


def _service_level(config: Config) -> list[Rule]:
    total = q.raw(config, "pickups_total")
    missed = q.raw(config, "pickups_total", 'service_level="missed"')
    rules = []
    windows = burn_windows(config)
    # NotDraining's window too: "no pickup in 30m" (pickups, not emails leaving the list).
    for window in sorted({*windows, config.not_draining_window}, key=seconds):

        def per_group(series: str, function: str, window: str = window) -> str:
            inner = f"sum without (service_level) ({function}({series}[{window}]))"
            return q.one_replica(config, inner)

        if window in windows:
            rules.append(
                _rule(
                    missed_ratio(window),
                    f"{per_group(missed, 'rate')}\n/\n{per_group(total, 'rate')}",
                )
            )
        rules.append(_rule(pickups(window), per_group(total, "increase")))
    return rules


def _api(config: Config) -> list[Rule]:
    requests = q.metric("api_requests_total")
    refused = q.sel(config, 'code="429"')
    return [
        _rule(
            RATE_LIMITED,
            f"sum by ({q.TARGET}) (rate({requests}{refused}[5m]))\n/\n"
            f"sum by ({q.TARGET}) (rate({requests}{q.sel(config)}[5m]))",
        )
    ]


def groups(config: Config) -> list[dict[str, Any]]:
    """The recording rule groups."""
    return [
        {
            "name": "alvaria-emailqueue.recording",
            "rules": _queue(config) + _thresholds(config) + _service_level(config) + _api(config),
        }
    ]
