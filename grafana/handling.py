"""The overview dashboard's "Handling" row: what happens to an email after it waits (SPEC §10).

Handle and resolution times, time per state and the repeat-contact rate are judged over a
fixed window (`handling_window` of the monitoring configuration, 1h, as the recording rules):
departures come a few a minute, too few in the panel's rate interval for an average or a
quantile to mean anything.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from grafana import panels as p
from grafana import queries as q
from monitoring.config import Config

HANDLE = "alvaria_emailqueue_handle_seconds"
RESOLUTION = "alvaria_emailqueue_resolution_seconds"
DWELL = "alvaria_emailqueue_state_dwell_seconds"
LAG = "alvaria_emailqueue_delivery_lag_seconds"
REPEATS = "alvaria_emailqueue_repeat_contacts_total"
ARRIVALS = "alvaria_emailqueue_arrivals_total"
WORKING = "alvaria_emailqueue_agents_working"
LOAD = "alvaria_emailqueue_agent_load"


def _over(config: Config) -> str:
    """How the fixed handling window reads in a panel description."""
    window = config.handling_window
    span = "hour" if window == "1h" else f"{window} window"
    return (
        f"a fixed {span} ending at each point (not the panel's rate interval, which holds too "
        "few departures)"
    )


# Series per organisation and state, or organisation and email type: the work type filter
# (and for states the email type filter) cannot apply to them.
BY_EMAIL_TYPE = f'{q.EXPORTER}, email_type=~"$email_type"'


def _window(config: Config) -> str:
    return f"[{config.handling_window}]"


def _rate(metric: str, by: str, selector: str, window: str, config: Config) -> str:
    inner = q.one_replica(f"rate({metric}{{{selector}}}{window})", config)
    return f"sum by ({by}) ({inner})"


def _mean(family: str, by: str, selector: str, window: str, config: Config) -> str:
    total = _rate(f"{family}_sum", by, selector, window, config)
    return f"{total} / {_rate(f'{family}_count', by, selector, window, config)}"


def _quantile(quantile: float, family: str, by: str, selector: str, window: str,
              config: Config) -> str:  # fmt: skip
    by = f"{by}, le" if by else "le"
    return (
        f"histogram_quantile({quantile}, {_rate(f'{family}_bucket', by, selector, window, config)})"
    )


def _handle_panels(board: dash.Dashboard, config: Config) -> None:
    window, by = _window(config), "org, work_type"
    board.with_panel(
        p.series(
            "Average handle time by work type",
            "AHT: how long agents worked the emails that left the queue from a handling state, "
            "from the start of handling (activeTime, else the first poll seeing it handled) to "
            f"its departure (handle_seconds_sum / _count), over {_over(config)}.",
            "s",
            p.query(_mean(HANDLE, by, q.QUEUE, window, config), "{{org}} / {{work_type}}"),
        )
    )
    board.with_panel(
        p.series(
            "Handle time p90 by work type",
            "Nine in ten handled emails took at most this long, interpolated within the "
            f"exporter's age buckets, over {_over(config)}.",
            "s",
            p.query(_quantile(0.9, HANDLE, by, q.QUEUE, window, config), "{{org}} / {{work_type}}"),
        )
    )
    board.with_panel(
        p.series(
            "Resolution time p50 / p90",
            "The customer's wait for an answer: from receivedTime (else queuedTime) to the "
            f"departure of handled emails, over {_over(config)}.",
            "s",
            p.query(_quantile(0.5, RESOLUTION, "", q.QUEUE, window, config), "p50"),
            p.query(_quantile(0.9, RESOLUTION, "", q.QUEUE, window, config), "p90", ref_id="B"),
        )
    )


def _state_panels(board: dash.Dashboard, config: Config) -> None:
    states = f'{q.EXPORTER}, state=~"Wrap|Review|ReviewActive"'
    board.with_panel(
        p.series(
            "Time in Wrap and Review",
            "Average stay in wrap-up, waiting for a supervisor's review and in review, from the "
            "first poll showing the state to the first showing another (state_dwell_seconds), "
            f"over {_over(config)}. Follows the job and organisation filters only: the metric has "
            "no work_type or email_type label.",
            "s",
            p.query(_mean(DWELL, "state", states, _window(config), config), "{{state}}"),
        )
    )
    board.with_panel(
        p.series(
            "Delivery lag p50 / p90",
            "How late new emails reach the queue: receivedTime - sentTime, at first sight. A "
            "jump is an upstream incident (mail gateway, ingestion). Follows the job, "
            "organisation and email type filters: the metric has no work_type label.",
            "s",
            p.query(_quantile(0.5, LAG, "", BY_EMAIL_TYPE, q.RATE, config), "p50"),
            p.query(_quantile(0.9, LAG, "", BY_EMAIL_TYPE, q.RATE, config), "p90", ref_id="B"),
        )
    )
    repeats = _rate(REPEATS, "org, work_type", q.QUEUE, _window(config), config)
    arrivals = _rate(ARRIVALS, "org, work_type", q.QUEUE, _window(config), config)
    board.with_panel(
        p.series(
            "Repeat-contact rate by work type",
            "Share of new emails that continue the thread of an email that had already left "
            f"the queue (within the exporter's thread_memory), over {_over(config)}.",
            "percentunit",
            p.query(f"{repeats} / {arrivals}", "{{org}} / {{work_type}}"),
        ).min(0)
    )


def _agent_panels(board: dash.Dashboard, config: Config) -> None:
    board.with_panel(
        p.series(
            "Agents working",
            "Distinct agents holding an email in a handling state, per organisation (counts "
            "only: no agent identity is exported). Follows the job and organisation filters "
            "only: the metric has no work_type or email_type label.",
            "short",
            p.query(q.queue_sum(WORKING, "org", q.EXPORTER, config), "{{org}}"),
            width=12,
        )
    )
    load = q.queue_sum(f"{LOAD}_gsum", "org", q.EXPORTER, config)
    agents = q.queue_sum(f"{LOAD}_gcount", "org", q.EXPORTER, config)
    board.with_panel(
        p.series(
            "Emails per working agent",
            "Average emails in handling states per working agent (agent_load_gsum / _gcount; "
            "agent_load is a gauge histogram: read it as it is, never put it into rate()). "
            "Follows the job and organisation filters only.",
            "short",
            p.query(f"{load} / {agents}", "{{org}}"),
            width=12,
        )
    )


def handling_row(board: dash.Dashboard, config: Config) -> None:
    """The Handling row of the overview dashboard."""
    board.with_row(dash.Row("Handling"))
    _handle_panels(board, config)
    _state_panels(board, config)
    _agent_panels(board, config)
