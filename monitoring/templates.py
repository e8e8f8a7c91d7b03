"""Alert annotation templates: numbers looked up at notification time, links with variables set.

Prometheus renders annotations with Go templates; `query` runs PromQL at evaluation time, so a
description can name the threshold, the reason label or the last success next to `$value`.
"""

from __future__ import annotations

from monitoring.config import Config
from monitoring.durations import duration

# Label matchers of one exporter target and of one queue group, filled from the alert's labels.
_TARGET_MATCH = "job=%q, instance=%q, org=%q"
_TARGET_ARGS = "$labels.job $labels.instance $labels.org"
_GROUP_MATCH = "job=%q, org=%q, work_type=%q, email_type=%q"
_GROUP_ARGS = "$labels.job $labels.org $labels.work_type $labels.email_type"


def _query(expr: str, match: str, args: str) -> str:
    """`query (printf ...)` of `expr`; `{}` stands for the alert's label matchers, `@` for the
    same matchers inside a selector that has others."""
    expr = expr.replace('"', '\\"').replace("{}", "{" + match + "}").replace("@", match)
    return f'query (printf "{expr}" {args})'


def query(expr: str, args: str) -> str:
    """A `query` of `expr` whose `%q` verbs `args` (alert labels) fill; quotes are escaped."""
    return _query(expr, "", args)


def target_query(expr: str) -> str:
    """A `query` of `expr` for the alert's exporter target (`{}` = its matchers)."""
    return _query(expr, _TARGET_MATCH, _TARGET_ARGS)


def instance_query(expr: str) -> str:
    """A `query` of `expr` for the alert's exporter process (`{}` = its matchers)."""
    return _query(expr, "job=%q, instance=%q", "$labels.job $labels.instance")


def group_query(expr: str) -> str:
    """A `query` of `expr` for the alert's queue group (`{}` = its matchers)."""
    return _query(expr, _GROUP_MATCH, _GROUP_ARGS)


def value_of(query: str, format_: str, missing: str) -> str:
    """The first value of `query` piped through `format_` (e.g. `humanizeDuration`)."""
    return f"{{{{ with {query} }}}}{{{{ (first .).Value | {format_} }}}}{{{{ else }}}}{missing}{{{{ end }}}}"


def reason(config: Config) -> str:
    """The poll error reason with the most failures in the reason window, and how many."""
    window = config.reason_window
    query = target_query(
        f"topk(1, increase(alvaria_emailqueue_poll_errors_total{{}}[{window}]) > 0)"
    )
    return (
        f"{{{{ with {query} }}}}{{{{ with first . }}}}reason `{{{{ .Labels.reason }}}}` "
        f'({{{{ printf "%.0f" .Value }}}} failed polls in the last {window}){{{{ end }}}}'
        "{{ else }}reason unknown (no failed poll counted in the last "
        f"{window}){{{{ end }}}}"
    )


def reason_label(config: Config) -> str:
    """Only the reason with the most failed polls in the reason window, for a summary."""
    window = config.reason_window
    query = target_query(
        f"topk(1, increase(alvaria_emailqueue_poll_errors_total{{}}[{window}]) > 0)"
    )
    return f"{{{{ with {query} }}}}{{{{ (first .).Labels.reason }}}}{{{{ else }}}}reason unknown{{{{ end }}}}"


def if_succeeded_before(then: str, otherwise: str) -> str:
    """`then` when the target has ever polled successfully since it started, else `otherwise`."""
    query = target_query("alvaria_emailqueue_last_poll_success_timestamp_seconds{}")
    return f"{{{{ if {query} }}}}{then}{{{{ else }}}}{otherwise}{{{{ end }}}}"


def setting(name: str, fallback: float) -> str:
    """The exporter's own setting series `name` (seconds) as a duration, or the assumed default."""
    missing = f"{duration(fallback)} assumed: not reported by this exporter"
    return value_of(target_query(f"alvaria_emailqueue_{name}{{}}"), "humanizeDuration", missing)


def dashboard_url(config: Config, uid: str, labels: tuple[str, ...]) -> str:
    """A link to dashboard `uid` with the variables named by `labels` set from the alert."""
    variables = "".join(
        f"{{{{ with $labels.{label} }}}}&var-{label}={{{{ . | urlquery }}}}{{{{ end }}}}"
        for label in labels
    )
    return f"{config.grafana_url}/d/{uid}?orgId=1{variables}"


def runbook_url(config: Config, alert: str) -> str:
    """The alert's runbook section."""
    return f"{config.runbook_url}#{alert.lower()}"
