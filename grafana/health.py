"""The "Exporter health" dashboard: polls, API requests, tokens and data quality."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from grafana import panels as p
from grafana import queries as q
from monitoring.config import CONFIG, Config

UID = CONFIG.health_uid

REQUESTS = "alvaria_emailqueue_api_requests_total"
X = q.EXPORTER


def _status_row(board: dash.Dashboard) -> None:
    board.with_row(dash.Row("Status"))
    board.with_panel(
        p.big_number(
            "Polls succeeding",
            "Per organisation: whether the last poll of the EmailQueue API succeeded.",
            "none",
            p.query(f"alvaria_emailqueue_up{{{X}}}", "{{org}}"),
        ).mappings([p.text_mapping("1", "up", "green"), p.text_mapping("0", "failing", "red")])
    )
    board.with_panel(
        p.big_number(
            "Time since last successful poll",
            "Per organisation. Queue metrics disappear once this exceeds the exporter's "
            "stale_after (alvaria_emailqueue_stale_after_seconds, 5 poll intervals by default); "
            "AlvariaEmailQueueDataStale pages a minute after it does.",
            "s",
            p.query(
                f"time() - alvaria_emailqueue_last_poll_success_timestamp_seconds{{{X}}}",
                "{{org}}",
            ),
        )
    )
    board.with_panel(
        p.big_number(
            "Token lifetime left",
            "Time until the cached OAuth2 token expires; the exporter refreshes it before. "
            "Empty with a static access token.",
            "s",
            p.query(
                f"alvaria_emailqueue_token_expiry_timestamp_seconds{{{X}}} - time()", "{{org}}"
            ),
        )
    )
    board.with_panel(
        p.top_table(
            "Build info",
            "Exporter version and Python version of each scraped instance.",
            "none",
            p.instant_table('alvaria_emailqueue_exporter_build_info{job=~"$job"}'),
            "info",
        )
        .span(6)
        .height(4)
    )


def _polls_row(board: dash.Dashboard) -> None:
    board.with_row(dash.Row("Polls"))
    board.with_panel(
        p.series(
            "Poll duration",
            "Wall time of the last poll per organisation: every page, retries and waits.",
            "s",
            p.query(f"alvaria_emailqueue_last_poll_duration_seconds{{{X}}}", "{{org}}"),
        )
    )
    board.with_panel(
        p.series(
            "Polls per minute",
            "Polls attempted per minute and organisation; 2 at the default 30s interval.",
            "cpm",
            p.query(
                f"{q.PER_MINUTE}{q.rate_sum('alvaria_emailqueue_polls_total', X, 'org')}",
                "{{org}}",
            ),
        )
    )
    board.with_panel(
        p.series(
            "Poll errors by reason",
            "Failed polls per minute, by reason: auth, rate_limited, http_4xx (404: wrong "
            "org_id), http_5xx, http_other (1xx/3xx), timeout, connection, decode, inconsistent, "
            "internal.",
            "cpm",
            p.query(
                q.per_minute_or_zero("alvaria_emailqueue_poll_errors_total", X, "org, reason"),
                "{{org}} {{reason}}",
            ),
        )
    )


def _api_row(board: dash.Dashboard) -> None:
    board.with_row(dash.Row("API"))
    board.with_panel(
        p.series(
            "API requests by code",
            "Requests to the token and emails endpoints per minute, by HTTP status "
            "(`error` when no response arrived).",
            "cpm",
            p.query(
                f"{q.PER_MINUTE}{q.rate_sum(REQUESTS, X, 'org, endpoint, code')}",
                "{{org}} {{endpoint}} {{code}}",
            ),
            width=12,
        )
    )
    board.with_panel(
        p.series(
            "429 responses",
            "Requests refused with 429 Too Many Requests per minute; the exporter waits "
            "for Retry-After and retries them.",
            "cpm",
            p.query(
                q.per_minute_or_zero(REQUESTS, f'{X}, code="429"', "org, endpoint"),
                "{{org}} {{endpoint}}",
            ),
            width=12,
        )
    )
    emails = f'{X}, endpoint="emails"'
    board.with_panel(
        p.series(
            "API requests per poll",
            "Emails-endpoint requests per poll: the number of pages, plus retries.",
            "short",
            p.query(
                f"{q.rate_sum(REQUESTS, emails, 'org')}"
                f" / {q.rate_sum('alvaria_emailqueue_polls_total', X, 'org')}",
                "{{org}}",
            ),
            width=12,
        )
    )
    buckets = q.rate_sum(
        "alvaria_emailqueue_api_request_duration_seconds_bucket", X, "org, endpoint, le"
    )
    board.with_panel(
        p.series(
            "API request duration p90",
            "90th percentile duration of single API requests, per endpoint.",
            "s",
            p.query(f"histogram_quantile(0.9, {buckets})", "{{org}} {{endpoint}}"),
            width=12,
        )
    )
    _api_limits(board)


def _api_limits(board: dash.Dashboard) -> None:
    """The API's own limits: its gateway's rate limit and its hosts' certificates (SPEC §11)."""
    board.with_panel(
        p.series(
            "Gateway rate limit left",
            "Requests left in the API gateway's rate-limit window on its last answer "
            "(RateLimit-Remaining; dashed: RateLimit-Limit), per endpoint. The exporter waits "
            "for the window's reset when a poll would not fit. Empty when the gateway sends no "
            "rate-limit headers.",
            "short",
            p.query(
                f"alvaria_emailqueue_api_rate_limit_remaining{{{X}}}", "{{org}} {{endpoint}} left"
            ),
            p.query(
                f"alvaria_emailqueue_api_rate_limit_limit{{{X}}}",
                "{{org}} {{endpoint}} limit",
                "B",
            ),
            width=12,
        ).override_by_query(**p.dashed("B"))
    )
    board.with_panel(
        p.series(
            "Certificate lifetime left",
            "Time until the certificate the API (emails) and token hosts presented expires "
            "(its notAfter). AlvariaEmailQueueCertificateExpiring fires under 14 days. A sudden "
            "change means a re-issued certificate, or a TLS-inspecting proxy's.",
            "s",
            p.query(
                f"alvaria_emailqueue_api_certificate_expiry_timestamp_seconds{{{X}}} - time()",
                "{{org}} {{endpoint}}",
            ),
            width=12,
        )
    )


def _data_row(board: dash.Dashboard) -> None:
    board.with_row(dash.Row("Data quality"))
    board.with_panel(
        p.series(
            "Emails reported vs counted",
            "totalItems as reported by the API against the emails the exporter counted; "
            "a lasting gap means pages were missed or items skipped.",
            "short",
            p.query(
                q.queue_max("alvaria_emailqueue_api_reported_items", "org", X), "{{org}} reported"
            ),
            p.query(
                q.queue_sum("alvaria_emailqueue_emails", "org", X), "{{org}} counted", ref_id="B"
            ),
        )
    )
    board.with_panel(
        p.series(
            "Duplicate and invalid items",
            "Per minute: the same id seen twice in one poll (the list moved while paging), "
            "and items skipped as invalid.",
            "cpm",
            p.query(
                q.per_minute_or_zero("alvaria_emailqueue_duplicate_items_total", X, "org"),
                "{{org}} duplicate",
            ),
            p.query(
                q.per_minute_or_zero("alvaria_emailqueue_invalid_items_total", X, "org, reason"),
                "{{org}} invalid {{reason}}",
                ref_id="B",
            ),
        )
    )
    board.with_panel(
        p.series(
            "Label overflow",
            "Items per minute whose label value was folded into `other`: work_type beyond "
            "max_work_types, agent beyond max_agents, state or email_type beyond 20 "
            "undocumented values each.",
            "cpm",
            p.query(
                q.per_minute_or_zero("alvaria_emailqueue_label_overflow_total", X, "org, label"),
                "{{org}} {{label}}",
            ),
        )
    )


def _fleet_row(board: dash.Dashboard) -> None:
    board.with_row(dash.Row("Fleet"))
    job = 'job=~"$job"'
    board.with_panel(
        p.merged_table(
            "Replicas and shards",
            "Per scraped replica: its shard, the number of shards it was configured with, how "
            "many organisations it polls, and whether its last configuration reload succeeded "
            "(1). Every replica must report the same total, and every shard below it must be "
            "listed (AlvariaEmailQueueShardingMismatch, AlvariaEmailQueueShardMissing).",
            {
                "shard": f"alvaria_emailqueue_shard_ordinal{{{job}}}",
                "total_shards": f"alvaria_emailqueue_total_shards{{{job}}}",
                "organisations": f"alvaria_emailqueue_targets{{{job}}}",
                "reload ok": f"alvaria_emailqueue_config_last_reload_successful{{{job}}}",
            },
        )
    )
    board.with_panel(
        p.series(
            "Waiting for the rate limit",
            "Seconds per second that requests and polls waited for their API key's rate limit "
            "(max_requests_per_second, or the gateway's rate-limit window until its reset), per "
            "organisation: near 1, polls are throttled by the rate limit rather than by 429s.",
            "s",
            p.query(
                f"{q.rate_sum('alvaria_emailqueue_rate_limit_wait_seconds_total', X, 'org')}"
                f" or on (org) {q.zero_per_org()}",
                "{{org}}",
            ),
            width=12,
        )
    )


def build(config: Config = CONFIG) -> model.Dashboard:
    """Build the dashboard model."""
    board = p.new_dashboard(
        UID,
        "Exporter health",
        "Alvaria EmailQueue exporter: is it polling, how the API answers, is the data whole.",
    )
    board.with_variable(p.datasource_variable())
    board.with_variable(p.label_variable("job", "Job", q.job_values(config)))
    board.with_variable(
        p.label_variable(
            "org", "Organisation", 'label_values(alvaria_emailqueue_up{job=~"$job"}, org)'
        )
    )
    for row in (_status_row, _polls_row, _api_row, _data_row, _fleet_row):
        row(board)
    return board.link(
        dash.DashboardLink("Email queue overview")
        .type(model.DashboardLinkType.DASHBOARDS)
        .tags(["alvaria"])
        .include_vars(True)
        .keep_time(True)
    ).build()
