"""Alerts about the exporter itself: is it scraped, do its polls succeed, and why not.

Cause before symptom: with refused credentials AuthFailing fires first (one scraped `auth` error
of an organisation that never succeeded, or a rise of that counter, then a short `for`);
PollsFailing waits for `polls_failing_intervals` poll
intervals and names the reason; DataStale waits for the exporter's own `stale_after`. The
example Alertmanager configuration inhibits the symptoms while their cause fires. Every
threshold is read from the exporter's `poll_interval_seconds` / `stale_after_seconds`, so any
poll interval works unchanged.
"""

from __future__ import annotations

from typing import Any

from monitoring import promql as q
from monitoring import templates as t
from monitoring.config import AlertSettings, Config

Rule = dict[str, Any]
ON = f"on ({q.TARGET})"


def alert(config: Config, name: str, expr: str, summary: str, description: str, uid: str,
          dashboard_labels: tuple[str, ...] = ("job", "org"),
          settings: AlertSettings | None = None) -> Rule:  # fmt: skip
    """One alerting rule with the configured `for`, severity and the shared annotations."""
    settings = settings or config.alert(name)
    full = f"AlvariaEmailQueue{name}"
    rule: Rule = {"alert": full, "expr": expr.strip() + "\n", "for": settings.for_}
    if settings.keep_firing_for:
        rule["keep_firing_for"] = settings.keep_firing_for
    rule["labels"] = {"severity": settings.severity}
    rule["annotations"] = {
        "summary": summary,
        "description": " ".join(description.split()),
        "runbook_url": t.runbook_url(config, full),
        "dashboard_url": t.dashboard_url(config, uid, dashboard_labels),
    }
    return rule


def _never_succeeded(config: Config, value: str) -> str:
    """`value` for targets that have not polled successfully since the exporter started."""
    success = q.raw(config, "last_poll_success_timestamp_seconds")
    return f"({value}\nunless {ON}\n{success})"


def _failing_for(config: Config, polls: str) -> str:
    """Seconds since the last success; for a target that never succeeded, polls x interval."""
    success = q.raw(config, "last_poll_success_timestamp_seconds")
    up = q.raw(config, "up")
    interval = q.poll_interval(config)
    return f"time() - {success}\n> {ON} {polls}\nand {ON} {up} == 0\nor\n" + _never_succeeded(
        config, f"{q.raw(config, 'polls_total')} * {ON} {interval}\n> {ON} {polls}"
    )


def _exporter_down(config: Config) -> Rule:
    up = f"up{q.sel(config)}"
    return alert(
        config,
        "ExporterDown",
        f"{up} == 0\nor\nabsent({up})",
        "Alvaria EmailQueue exporter {{ with $labels.instance }}{{ . }} {{ end }}is down",
        f"""{{{{ if $labels.instance }}}}Prometheus has failed to scrape {{{{ $labels.instance }}}}
        (job {{{{ $labels.job }}}}) for more than {config.alert("ExporterDown").for_}
        {{{{- else }}}}Prometheus has had no target matching {config.job_selector.replace('"', "")} for more
        than {config.alert("ExporterDown").for_}{{{{ end }}}}; the email queue is not monitored.""",
        config.health_uid,
        ("job",),
    )


def _auth_failing(config: Config) -> Rule:
    errors = q.raw(config, "poll_errors_total", 'reason="auth"')
    up = q.raw(config, "up")
    # Refused again recently; or refused at all by an organisation that never succeeded (one
    # scraped sample suffices, so this fires before PollsFailing can).
    expr = (
        f"(\nsum without (reason) (increase({errors}[{config.reason_window}])) > 0\n"
        f"or {ON}\n"
        + _never_succeeded(config, f"sum without (reason) ({errors}) > 0")
        + f"\n)\nand {ON}\n{up} == 0"
    )
    return alert(
        config,
        "AuthFailing",
        expr,
        "Credentials of organisation {{ $labels.org }} refused: "
        '{{ printf "%.0f" $value }} polls failed with reason auth',
        f"""The credentials of organisation {{{{ $labels.org }}}} ({{{{ $labels.instance }}}})
        are refused: {{{{ printf "%.0f" $value }}}} polls failed with reason `auth` (401/403
        from the token endpoint or the API). Polls keep failing until client_id,
        client_secret, api_key or access_token is fixed;
        {t.if_succeeded_before("the queue metrics go stale after stale_after (" + t.setting("stale_after_seconds", config.fallback_stale_after_seconds) + ")",
                               "no poll has succeeded since the exporter started")}.""",
        config.health_uid,
    )  # fmt: skip


def _polls_failing(config: Config) -> Rule:
    polls = f"{config.polls_failing_intervals} * {q.poll_interval(config)}"
    return alert(
        config,
        "PollsFailing",
        _failing_for(config, polls),
        "Polls of organisation {{ $labels.org }} failing for {{ $value | humanizeDuration }}: "
        + t.reason_label(config),
        f"""{t.if_succeeded_before(
            "Polls of organisation {{ $labels.org }} by {{ $labels.instance }} have failed for "
            "{{ $value | humanizeDuration }} (more than " + str(config.polls_failing_intervals)
            + " poll intervals of " + t.setting("poll_interval_seconds", config.fallback_poll_interval_seconds) + ")",
            "No poll of organisation {{ $labels.org }} by {{ $labels.instance }} has succeeded "
            "since the exporter started ({{ $value | humanizeDuration }} of polling)")};
        {t.reason(config)}. {t.if_succeeded_before(
            "The last good snapshot is served until stale_after ("
            + t.setting("stale_after_seconds", config.fallback_stale_after_seconds) + "), then the queue metrics disappear.",
            "The queue of this organisation is not monitored.")}""",
        config.health_uid,
    )  # fmt: skip


def _data_stale(config: Config) -> Rule:
    return alert(
        config,
        "DataStale",
        _failing_for(config, q.stale_after(config)),
        "Queue of organisation {{ $labels.org }} not monitored: no successful poll for "
        "{{ $value | humanizeDuration }} (" + t.reason_label(config) + ")",
        f"""{t.if_succeeded_before(
            "The last successful poll of organisation {{ $labels.org }} by {{ $labels.instance }} "
            "was {{ $value | humanizeDuration }} ago, more than stale_after ("
            + t.setting("stale_after_seconds", config.fallback_stale_after_seconds) + "), so its queue metrics are gone",
            "No poll of organisation {{ $labels.org }} by {{ $labels.instance }} has succeeded "
            "in {{ $value | humanizeDuration }} since the exporter started")};
        {t.reason(config)}. No queue or service-level alert can fire for it.""",
        config.health_uid,
    )  # fmt: skip


def _rate_limited(config: Config) -> Rule:
    from monitoring.recording import RATE_LIMITED

    errors = q.raw(config, "poll_errors_total", 'reason="rate_limited"')
    return alert(
        config,
        "ApiRateLimited",
        f"{RATE_LIMITED} > 0.1\nor {ON}\nsum without (reason) (increase({errors}[15m])) > 2",
        "The EmailQueue API rate-limits organisation {{ $labels.org }}: {{ if le $value 1.0 }}"
        "{{ $value | humanizePercentage }} of requests answered 429{{ else }}"
        '{{ printf "%.0f" $value }} polls failed{{ end }}',
        """Organisation {{ $labels.org }} ({{ $labels.instance }}): {{ if le $value 1.0 }}{{
        $value | humanizePercentage }} of API requests were answered 429 over the last 5m
        (threshold 10%){{ else }}{{ printf "%.0f" $value }} polls failed with reason
        `rate_limited` in the last 15m (threshold 2){{ end }}. Polls slow down and data
        arrives late.""",
        config.health_uid,
    )


def _token_refresh_failing(config: Config) -> Rule:
    requests = q.metric("api_requests_total")
    failed = requests + q.sel(config, 'endpoint="token"', 'code!~"2.."')
    ok = requests + q.sel(config, 'endpoint="token"', 'code=~"2.."')
    return alert(
        config,
        "TokenRefreshFailing",
        f"sum by ({q.TARGET}) (increase({failed}[15m])) > 0\n"
        f"unless {ON}\nsum by ({q.TARGET}) (increase({ok}[15m])) > 0",
        '{{ printf "%.0f" $value }} token requests for organisation {{ $labels.org }} failed, '
        "none succeeded in 15m",
        f"""Organisation {{{{ $labels.org }}}} ({{{{ $labels.instance }}}}): {{{{ printf "%.0f"
        $value }}}} token requests failed in the last 15m and none succeeded. The cached token
        expires {t.value_of(t.target_query("alvaria_emailqueue_token_expiry_timestamp_seconds{} - time()"),
                            "humanizeDuration", "at an unknown time")} from now;
        polls fail after that.""",
        config.health_uid,
    )  # fmt: skip


def _label_overflow(config: Config) -> Rule:
    overflow = q.raw(config, "label_overflow_total")
    return alert(
        config,
        "LabelOverflow",
        f"sum by ({q.TARGET}, label) (increase({overflow}[1h])) > 0",
        "{{ $value | humanize }} {{ $labels.label }} values of organisation {{ $labels.org }} "
        'folded into "other"',
        """Organisation {{ $labels.org }} ({{ $labels.instance }}) has more distinct
        {{ $labels.label }} values than the exporter allows; {{ $value | humanize }} values were
        folded into "other" in the last hour.""",
        config.health_uid,
    )


def _certificate_expiring(config: Config) -> Rule:
    expiry = q.raw(config, "api_certificate_expiry_timestamp_seconds")
    days = config.certificate_expiry_days
    return alert(
        config,
        "CertificateExpiring",
        f"{expiry} - time() < {q.number(days * 86400)}",
        "The certificate of the {{ $labels.endpoint }} host of organisation {{ $labels.org }} "
        "expires in {{ $value | humanizeDuration }}",
        f"""The certificate the {{{{ $labels.endpoint }}}} host of organisation
        {{{{ $labels.org }}}} presented to {{{{ $labels.instance }}}} expires in
        {{{{ $value | humanizeDuration }}}} (threshold {q.number(days)} days). Once it has
        expired, every poll fails as `connection`; a certificate re-issued by a TLS-inspecting
        proxy shows up here too.""",
        config.health_uid,
        ("job", "org"),
    )


def groups(config: Config) -> list[dict[str, Any]]:
    """The exporter alert group."""
    rules = [
        _exporter_down(config),
        _auth_failing(config),
        _polls_failing(config),
        _data_stale(config),
        _rate_limited(config),
        _token_refresh_failing(config),
        _label_overflow(config),
        _certificate_expiring(config),
    ]
    return [{"name": "alvaria-emailqueue.exporter", "rules": rules}]
