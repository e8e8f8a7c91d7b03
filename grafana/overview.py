"""The "Email queue overview" dashboard: backlog, age, flow and agents per work type."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders.common import StackingConfig
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import StackingMode

from grafana import panels as p
from grafana import queries as q
from grafana.handling import handling_row
from monitoring.config import CONFIG, Config
from monitoring.recording import TARGET_SECONDS

UID = CONFIG.overview_uid

ARRIVALS = "alvaria_emailqueue_arrivals_total"
DEPARTURES = "alvaria_emailqueue_departures_total"
AGE_BUCKETS = "alvaria_emailqueue_waiting_email_age_seconds_bucket"
OLDEST_AGE = "alvaria_emailqueue_oldest_email_age_seconds"
PICKUPS = "alvaria_emailqueue_pickups_total"
PICKUP_WAIT = "alvaria_emailqueue_pickup_wait_seconds_bucket"
SL = "alvaria_emailqueue_service_level"
# Service level % is judged over a fixed rolling hour: the panel's rate interval holds too few
# pickups for a share to mean anything.
SL_WINDOW = "[1h]"


def _now_row(board: dash.Dashboard, config: Config) -> None:
    board.with_row(dash.Row("Queue now"))
    board.with_panel(
        p.big_number(
            "Emails waiting",
            "Emails waiting for an agent (states Queued, Queued2, Transferred, Reassigned).",
            "short",
            p.query(f"sum({q.waiting('org', config)})"),
        )
    )
    board.with_panel(
        p.big_number(
            "Oldest waiting email",
            "How long the oldest email that waits for an agent has waited.",
            "s",
            p.query(
                f"max({q.queue_max(OLDEST_AGE, 'org', f'{q.QUEUE}, {q.waiting_matcher(config)}', config)})"
            ),
        )
    )
    for title, metric, what in (
        ("Arrivals per minute", ARRIVALS, "Emails that entered the queue"),
        ("Departures per minute", DEPARTURES, "Emails that left the queue"),
    ):
        board.with_panel(
            p.big_number(
                title,
                f"{what}, per minute (seen by comparing consecutive polls).",
                "cpm",
                p.query(f"{q.PER_MINUTE}sum({q.queue_rate_sum(metric, 'org', config=config)})"),
            )
        )


def _backlog_row(board: dash.Dashboard, config: Config) -> None:
    board.with_row(dash.Row("Backlog"))
    board.with_panel(
        p.series(
            "Emails waiting by work type",
            "Emails waiting for an agent, per organisation and work type.",
            "short",
            p.query(q.waiting("org, work_type", config), "{{org}} / {{work_type}}"),
        )
    )
    board.with_panel(
        p.series(
            "Emails by state",
            "Every email in the queue, stacked by its state: waiting, being worked on, wrap-up.",
            "short",
            p.query(q.queue_sum("alvaria_emailqueue_emails", "state", config=config), "{{state}}"),
        ).stacking(StackingConfig().mode(StackingMode.NORMAL))
    )
    board.with_panel(
        p.series(
            "Emails waiting by email type",
            "Emails waiting for an agent, per email type (inbound, manual or campaign outbound).",
            "short",
            p.query(q.waiting("email_type", config), "{{email_type}}"),
        )
    )


def _age_row(board: dash.Dashboard, config: Config) -> None:
    board.with_row(dash.Row("Waiting age"))
    board.with_panel(
        p.series(
            "Oldest waiting email vs target",
            "Age of the oldest waiting email per work type (wall clock); dashed: the work "
            "type's service-level target as the exporter reports it (service_level_target_seconds).",
            "s",
            p.query(
                q.queue_max(
                    OLDEST_AGE, "org, work_type", f"{q.QUEUE}, {q.waiting_matcher(config)}", config
                ),
                "{{org}} / {{work_type}}",
            ),
            p.query(
                f"max by (org, work_type) ({TARGET_SECONDS}{{{q.QUEUE_RULES}}})",
                "target {{org}} / {{work_type}}",
                ref_id="B",
            ),
        ).override_by_query(**p.dashed("B"))
    )
    board.with_panel(
        p.age_heatmap(
            "Waiting-age distribution",
            "How many waiting emails fall in each age bucket, over time. The buckets are a "
            "gauge histogram (a snapshot of the queue at each poll, not events): read them as "
            "they are and never put them into rate() or increase().",
            p.heatmap_query(q.queue_sum(AGE_BUCKETS, "le", config=config)),
        )
    )
    board.with_panel(
        p.series(
            "Waiting age p50 / p90",
            "Median and 90th percentile age of the waiting emails, interpolated within the "
            "exporter's age buckets.",
            "s",
            p.query(
                f"histogram_quantile(0.5, {q.queue_sum(AGE_BUCKETS, 'le', config=config)})", "p50"
            ),
            p.query(
                f"histogram_quantile(0.9, {q.queue_sum(AGE_BUCKETS, 'le', config=config)})",
                "p90",
                ref_id="B",
            ),
        )
    )
    by_work_type = q.queue_sum(AGE_BUCKETS, "org, work_type, le", config=config)
    board.with_panel(
        p.series(
            "Waiting age p50 / p90 by work type",
            "Median (solid) and 90th percentile (dashed) age of the waiting emails per work "
            "type, interpolated within the exporter's age buckets.",
            "s",
            p.query(f"histogram_quantile(0.5, {by_work_type})", "p50 {{org}} / {{work_type}}"),
            p.query(
                f"histogram_quantile(0.9, {by_work_type})",
                "p90 {{org}} / {{work_type}}",
                ref_id="B",
            ),
            width=24,
        ).override_by_query(**p.dashed("B"))
    )


def _service_level_row(board: dash.Dashboard, config: Config) -> None:
    board.with_row(dash.Row("Service level"))
    met = q.queue_rate_sum(PICKUPS, "org, work_type", SL_WINDOW, config)
    met = met.replace(f"{{{q.QUEUE}}}", f'{{{q.QUEUE}, service_level="met"}}')
    total = q.queue_rate_sum(PICKUPS, "org, work_type", SL_WINDOW, config)
    board.with_panel(
        p.series(
            "Service level by work type",
            "Share of the emails picked up within their target (pickups_total met / (met + "
            "missed)), per work type, over a fixed hour ending at each point (not the panel's "
            "rate interval, which holds too few pickups for a share). Empty while nothing was "
            "picked up.",
            "percentunit",
            p.query(f"{met} / {total}", "{{org}} / {{work_type}}"),
        )
        .min(0)
        .max(1)
    )
    wait = q.queue_rate_sum(PICKUP_WAIT, "le", config=config)
    board.with_panel(
        p.series(
            "Pickup wait p50 / p90",
            "How long the emails picked up in the panel's rate interval had waited (queued to "
            "picked up, wall clock), interpolated within the exporter's age buckets. The "
            "average speed of answer is pickup_wait_seconds_sum / _count.",
            "s",
            p.query(f"histogram_quantile(0.5, {wait})", "p50"),
            p.query(f"histogram_quantile(0.9, {wait})", "p90", ref_id="B"),
        )
    )
    for title, metric, what in (
        ("Breached now", "breached_emails", "have waited longer than their target"),
        ("At risk", "at_risk_emails", "will breach their target within its warning window"),
    ):
        board.with_panel(
            p.big_number(
                title,
                f"Waiting emails that {what} (on each group's clock).",
                "short",
                p.query(f"sum({q.queue_sum(f'{SL}_{metric}', 'org', config=config)})"),
                width=4,
            )
        )
    next_breach = q.one_replica(f"{SL}_next_breach_timestamp_seconds{{{q.QUEUE}}}", config)
    board.with_panel(
        p.big_number(
            "Time to next breach",
            "Time until the next waiting email that has not breached yet passes its target. "
            "Empty when no waiting email can breach.",
            "s",
            p.query(f"clamp_min(min({next_breach}) - time(), 0)"),
            width=4,
        )
    )
    board.with_panel(
        p.top_table(
            "Work types with breached emails",
            "The ten work types with the most waiting emails past their target, now (all "
            "zero when none is).",
            "short",
            p.instant_table(
                f"topk(10, {q.queue_sum(f'{SL}_breached_emails', 'org, work_type', config=config)})"
            ),
            "breached",
        )
    )


def _flow_row(board: dash.Dashboard, config: Config) -> None:
    board.with_row(dash.Row("Flow"))
    board.with_panel(
        p.series(
            "Arrivals vs departures",
            "Emails entering and leaving the queue per minute. Departures below arrivals "
            "for long means the backlog grows.",
            "cpm",
            p.query(
                f"{q.PER_MINUTE}sum({q.queue_rate_sum(ARRIVALS, 'org', config=config)})", "arrivals"
            ),
            p.query(
                f"{q.PER_MINUTE}sum({q.queue_rate_sum(DEPARTURES, 'org', config=config)})",
                "departures",
                ref_id="B",
            ),
        )
    )
    by = "org, work_type"
    window = q.FLOW_WINDOW
    net = f"{q.flow_or_zero(ARRIVALS, by, window, config)} - {q.flow_or_zero(DEPARTURES, by, window, config)}"
    board.with_panel(
        p.series(
            "Net backlog change",
            "Arrivals minus departures per minute, per work type: above zero the backlog grows. "
            "Averaged over a fixed 15 minutes (not the panel's rate interval): the exporter sees "
            "the flow once per poll, and shorter windows turn it into steps.",
            "cpm",
            p.query(f"{q.PER_MINUTE}({net})", "{{org}} / {{work_type}}"),
        )
    )
    drain = f"{q.flow_or_zero(DEPARTURES, by, window, config)} - {q.flow_or_zero(ARRIVALS, by, window, config)}"
    board.with_panel(
        p.series(
            "Estimated time to drain",
            "Waiting emails divided by how fast departures outpace arrivals, both averaged "
            "over a fixed 15 minutes (not the panel's rate interval, which makes it jump from "
            'poll to poll). Shown as "not draining" (a week or more) when they do not; empty '
            "when nothing waits.",
            "s",
            p.query(
                f"clamp_max({q.waiting(by, config)} / clamp_min({drain}, 0), {p.NEVER_SECONDS})",
                "{{org}} / {{work_type}}",
            ),
        ).mappings([p.range_mapping(p.NEVER_SECONDS, 1e300, "not draining")])
    )


def _top_row(board: dash.Dashboard, config: Config) -> None:
    board.with_row(dash.Row("Top work types"))
    board.with_panel(
        p.top_table(
            "Top work types by backlog",
            "The ten work types with the most emails waiting for an agent, now.",
            "short",
            p.instant_table(f"topk(10, {q.waiting('org, work_type', config)})"),
            "waiting",
        )
    )
    board.with_panel(
        p.top_table(
            "Top work types by oldest waiting email",
            "The ten work types whose oldest waiting email has waited longest, now.",
            "s",
            p.instant_table(
                f"topk(10, {q.queue_max(OLDEST_AGE, 'org, work_type', f'{q.QUEUE}, {q.waiting_matcher(config)}', config)})"
            ),
            "oldest waiting",
        )
    )


def _agents_row(board: dash.Dashboard, config: Config) -> None:
    board.with_row(dash.Row("Agents"))
    board.with_panel(
        p.series(
            "Agent workload",
            "Emails assigned to each agent (the 20 busiest), by workHandlerName. Follows the "
            "job and organisation filters only: the agent metric has no work_type or "
            "email_type label, so those filters do not apply. Needs the exporter's "
            "agent_metrics setting; empty otherwise.",
            "short",
            p.query(
                "topk(20, "
                + q.queue_sum("alvaria_emailqueue_agent_emails", "org, agent", q.EXPORTER, config)
                + ")",
                "{{org}} / {{agent}}",
            ),
            width=24,
        )
    )


def build(config: Config = CONFIG) -> model.Dashboard:
    """Build the dashboard model."""
    board = p.new_dashboard(
        UID,
        "Email queue overview",
        "Alvaria Cloud EmailQueue: what waits, for how long, and whether the queue drains.",
    )
    for variable in (
        p.datasource_variable(),
        p.label_variable("job", "Job", q.job_values(config)),
        p.label_variable(
            "org", "Organisation", 'label_values(alvaria_emailqueue_up{job=~"$job"}, org)'
        ),
        p.label_variable(
            "work_type",
            "Work type",
            f"label_values(alvaria_emailqueue_emails{{{q.EXPORTER}}}, work_type)",
        ),
        p.label_variable(
            "email_type",
            "Email type",
            f"label_values(alvaria_emailqueue_emails{{{q.EXPORTER}}}, email_type)",
        ),
    ):
        board.with_variable(variable)
    rows = (
        _now_row,
        _service_level_row,
        _backlog_row,
        _age_row,
        _flow_row,
        handling_row,
        _top_row,
        _agents_row,
    )
    for row in rows:
        row(board, config)
    return board.link(
        dash.DashboardLink("Exporter health")
        .type(model.DashboardLinkType.DASHBOARDS)
        .tags(["alvaria"])
        .include_vars(True)
        .keep_time(True)
    ).build()
