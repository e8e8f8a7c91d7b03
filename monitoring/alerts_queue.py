"""Queue and service-level alerts, per organisation, work type and email type.

They carry `job`, `org`, `work_type` and `email_type` but no replica label, so a rollout or a
second HA replica does not turn one alert into two, and they judge `alert_email_types` only.
`keep_firing_for` outlasts `stale_after`: when polls fail the queue series vanish, and the
exporter alerts (which inhibit these) take over instead of a false "resolved".
"""

from __future__ import annotations

from typing import Any

from monitoring import promql as q
from monitoring import recording as r
from monitoring import templates as t
from monitoring.alerts_exporter import alert
from monitoring.config import AlertSettings, BurnWindow, Config
from monitoring.durations import seconds

GROUP_LABELS = ("job", "org", "work_type", "email_type")
GROUP_ON = "on (job, org, work_type, email_type)"
WHERE = (
    "{{ $labels.email_type }} emails of work type {{ $labels.work_type }} in organisation "
    "{{ $labels.org }}"
)


def _group_value(expr: str, format_: str = "humanize", missing: str = "unknown") -> str:
    return t.value_of(t.group_query(expr), format_, missing)


def _queue_alert(config: Config, name: str, expr: str, summary: str, description: str,
                 settings: AlertSettings | None = None) -> Any:  # fmt: skip
    return alert(
        config, name, expr, summary, description, config.overview_uid, GROUP_LABELS, settings
    )


def _backlog_high(config: Config) -> Any:
    waiting = f"{r.WAITING}{{{q.alert_types(config)}}}"
    return _queue_alert(
        config,
        "BacklogHigh",
        f"{waiting}\n> {r.BACKLOG_THRESHOLD}",
        "{{ $value | humanize }} emails waiting in {{ $labels.work_type }} ({{ $labels.org }}), "
        "above " + _group_value(r.BACKLOG_THRESHOLD + "{}"),
        f"""{{{{ $value | humanize }}}} {WHERE} are waiting, above the threshold of
        {_group_value(r.BACKLOG_THRESHOLD + "{}")}; the oldest has waited
        {_group_value(r.OLDEST + "{}", "humanizeDuration", "an unknown time")}.""",
    )


def _backlog_growing(config: Config) -> Any:
    window = config.backlog_growing_window
    span = seconds(window)
    deriv = r.window_name("waiting_emails:deriv", window)
    waiting = f"{r.WAITING}{{{q.alert_types(config)}}}"
    # The backlog a window ago is about n - g (n now, g the fitted growth), so "g > share of
    # (n - g)" is "g > n * share / (1 + share)": no `offset` in the comparison, and a work type
    # that started from zero counts. The `offset` term requires the series to be a whole window
    # old, so the fit never runs on a few minutes of samples.
    share = config.backlog_growing_share / (1 + config.backlog_growing_share)
    # From the raw series: the recording rule may not have been evaluated yet at this instant.
    emails = q.metric("emails") + "{" + q.waiting_matcher(config) + ", @}"
    waiting_now = q.one_replica(config, f"sum without (state) ({emails})")
    return _queue_alert(
        config,
        "BacklogGrowing",
        f"{deriv}{{{q.alert_types(config)}}} * {q.number(span)} > {q.number(config.backlog_growing_min)}\n"
        f"and\n{deriv} * {q.number(span)}\n> {r.WAITING} * {share!r}\n"
        f"and\n{waiting} offset {window}",
        "Backlog of {{ $labels.work_type }} ({{ $labels.org }}) grew by {{ $value | humanize }} "
        f"in {window}",
        f"""The backlog of {WHERE} grew by {{{{ $value | humanize }}}} emails over the last
        {window} (a linear fit) to {_group_value(waiting_now)} waiting: more than
        {q.number(config.backlog_growing_min)} emails and more than
        {config.backlog_growing_share:.0%} of what it was.""",
    )  # fmt: skip


def _not_draining(config: Config) -> Any:
    window = config.not_draining_window
    waiting = f"{r.WAITING}{{{q.alert_types(config)}}}"
    picked = r.pickups(window)
    return _queue_alert(
        config,
        "NotDraining",
        f"(\n{waiting} >= {q.number(config.not_draining_min)}\nor\n(\n{waiting} > 0\nand\n"
        f"{r.OLDEST}\n> {config.not_draining_age_share!r} * {r.TARGET_SECONDS}\n)\n)\n"
        f"unless\n{picked} > 0",
        "{{ $value | humanize }} emails waiting in {{ $labels.work_type }} ({{ $labels.org }}), "
        f"none picked up in {window}",
        f"""{{{{ $value | humanize }}}} {WHERE} are waiting and no agent has picked one up in
        the last {window}; the oldest has waited {_group_value(r.OLDEST + "{}", "humanizeDuration", "an unknown time")}
        of its {_group_value(r.TARGET_SECONDS + "{}", "humanizeDuration")} target.""",
    )


def _sl_series(config: Config, name: str) -> str:
    return q.one_replica(config, q.raw(config, name, q.alert_types(config)))


def _at_risk(config: Config) -> Any:
    return _queue_alert(
        config,
        "ServiceLevelAtRisk",
        f"{_sl_series(config, 'service_level_at_risk_emails')} > 0",
        "{{ $value | humanize }} emails in {{ $labels.work_type }} ({{ $labels.org }}) breach their "
        "target within the warning window",
        f"""{{{{ $value | humanize }}}} waiting {WHERE} will breach their target of
        {_group_value(r.TARGET_SECONDS + "{}", "humanizeDuration")} within the warning window;
        the next breach is at {_group_value(
            "min(alvaria_emailqueue_service_level_next_breach_timestamp_seconds{})",
            "humanizeTimestamp")}. Pick them up now.""",
    )  # fmt: skip


def _breached(config: Config) -> Any:
    return _queue_alert(
        config,
        "ServiceLevelBreached",
        f"{_sl_series(config, 'service_level_breached_emails')} > 0",
        "{{ $value | humanize }} emails in {{ $labels.work_type }} ({{ $labels.org }}) past their "
        "target of " + _group_value(r.TARGET_SECONDS + "{}", "humanizeDuration"),
        f"""{{{{ $value | humanize }}}} waiting {WHERE} have waited longer than their target of
        {_group_value(r.TARGET_SECONDS + "{}", "humanizeDuration")} (on the group's clock);
        the oldest has waited {_group_value(r.OLDEST + "{}", "humanizeDuration", "an unknown time")}.""",
    )


def _burn(config: Config, window: BurnWindow) -> Any:
    types = f"{{{q.alert_types(config)}}}"
    budget = f"(1 - {r.OBJECTIVE})"
    volume = f"{r.pickups(window.long)} >= {q.number(config.burn_min_pickups)}"
    # From the raw series: the recording rule may not have been evaluated yet at this instant.
    total = q.metric("pickups_total") + "{}"
    pickups = q.one_replica(
        config, f"sum without (service_level) (increase({total}[{window.long}]))"
    )
    expr = (
        f"{r.missed_ratio(window.long)}{types}\n> {q.number(window.factor)} * {budget}\n"
        f"and\n{r.missed_ratio(window.short)}\n> {q.number(window.factor)} * {budget}\n"
        f"and\n{volume}"
    )
    rule = _queue_alert(
        config,
        "ServiceLevelBelowObjective",
        expr,
        "{{ $value | humanizePercentage }} of pickups in {{ $labels.work_type }} ({{ $labels.org }}) "
        f"missed their target over {window.long}",
        f"""Over the last {window.long}, {{{{ $value | humanizePercentage }}}} of the picked-up
        {WHERE} missed their target (and {_group_value(r.missed_ratio(window.short) + "{}",
        "humanizePercentage")} over the last {window.short}); the objective is
        {_group_value(r.OBJECTIVE + "{}", "humanizePercentage")} met, so its error budget burns
        at least {q.number(window.factor)} times faster than the objective allows. Pickups in {window.long}:
        {_group_value(pickups, 'printf "%.0f"')}.""",
        AlertSettings(window.for_, window.severity),
    )  # fmt: skip
    rule["labels"]["long_window"] = window.long
    return rule


def groups(config: Config) -> list[dict[str, Any]]:
    """The queue and service-level alert groups."""
    queue = [_backlog_high(config), _backlog_growing(config), _not_draining(config)]
    service_level = [_at_risk(config), _breached(config)]
    service_level += [_burn(config, window) for window in config.burn_windows]
    return [
        {"name": "alvaria-emailqueue.queue", "rules": queue},
        {"name": "alvaria-emailqueue.service-level", "rules": service_level},
    ]
