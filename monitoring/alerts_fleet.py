"""Alerts about a sharded fleet of exporters (kube-state-metrics style).

Each replica exports `alvaria_emailqueue_shard_ordinal` (its shard) and
`alvaria_emailqueue_total_shards`. Replicas of one deployment (same `fleet_labels`) must agree
on the count, and every ordinal below it must have a replica Prometheus can scrape: otherwise
the organisations of that shard are polled by nobody. OrganisationLost names the
organisations themselves, from `alvaria_emailqueue_up`: exported by some replica within
`lost_window` and by none now, whether their replica still answers scrapes or left service
discovery. The example Alertmanager configuration inhibits their queue and service-level
alerts by `org`, so a dead shard silences only its own organisations.
"""

from __future__ import annotations

from typing import Any

from monitoring import promql as q
from monitoring import templates as t
from monitoring.alerts_exporter import alert
from monitoring.config import Config


def _lost(config: Config) -> str:
    """Template PromQL: organisations of the alert's job exported within the lost window and by
    none now (`%q` twice: the job)."""
    up = q.metric("up")
    return (
        f"group by (org) (last_over_time({up}{{job=%q}}[{config.lost_window}])) "
        f"unless on (org) {up}{{job=%q}}"
    )


# A description lists at most this many organisations, then says how many there are.
LISTED = 20


def _org_list(query: str, empty: str) -> str:
    """The `org` labels of a template query's result, sorted and comma-separated (the first
    LISTED, then the count), or `empty`."""
    return (
        f'{{{{ with {query} }}}}{{{{ range $i, $s := sortByLabel "org" . }}}}'
        f"{{{{ if lt $i {LISTED} }}}}{{{{ if $i }}}}, {{{{ end }}}}{{{{ $s.Labels.org }}}}{{{{ end }}}}{{{{ end }}}}"
        f"{{{{ if gt (len .) {LISTED} }}}} ... ({{{{ len . }}}} in all){{{{ end }}}}{{{{ else }}}}{empty}{{{{ end }}}}"
    )


def _lost_orgs(config: Config, empty: str = "none") -> str:
    return _org_list(t.query(_lost(config), "$labels.job $labels.job"), empty)


def _organisation_lost(config: Config) -> dict[str, Any]:
    by = ", ".join((*config.fleet_labels, "org"))
    up = q.raw(config, "up")
    window = config.lost_window
    # Where it was last seen: the replicas that exported it within the window, each with the
    # shard it last reported (a replica without the shard series is named without one).
    replicas = t.query(
        f"last_over_time({q.metric('up')}{{job=%q, org=%q}}[{window}])",
        "$labels.job $labels.org",
    )
    shard = t.query(
        f"last_over_time({q.metric('shard_ordinal')}{{job=%q, instance=%q}}[{window}])",
        "$labels.job $r.Labels.instance",
    )
    where = (
        f'{{{{ range $i, $r := {replicas} | sortByLabel "instance" }}}}{{{{ if $i }}}}, {{{{ end }}}}'
        f"{{{{ $r.Labels.instance }}}}{{{{ with {shard} }}}} (shard {{{{ (first .).Value }}}}){{{{ end }}}}"
        "{{ end }}"
    )
    return alert(
        config,
        "OrganisationLost",
        f"group by ({by}) (last_over_time({up}[{window}]))\nunless on ({by})\n{up}",
        "Organisation {{ $labels.org }} is exported by no replica of job {{ $labels.job }}",
        f"""Organisation {{{{ $labels.org }}}} was exported in the last {window} by {where} and
        now by no replica of job {{{{ $labels.job }}}}: the replica died, left service discovery
        or stopped polling it, so its queue is not monitored and no queue or service-level
        alert can fire for it (they are inhibited). Organisations of the job lost now:
        {_lost_orgs(config)}.""",
        config.health_uid,
    )


def _sharding_mismatch(config: Config) -> dict[str, Any]:
    by = ", ".join(config.fleet_labels)
    total = q.raw(config, "total_shards")
    instances = t.query(f"{q.metric('total_shards')}{{job=%q}}", "$labels.job")
    # Organisations exported by replicas of more than one shard: polled twice.
    twice = t.query(
        f"count by (org) (count by (org, ordinal) ({q.metric('up')}{{job=%q}} * on (job, instance) "
        f'group_left (ordinal) count_values without () ("ordinal", {q.metric("shard_ordinal")}{{job=%q}}))) > 1',
        "$labels.job $labels.job",
    )
    return alert(
        config,
        "ShardingMismatch",
        f"stdvar by ({by}) ({total}) != 0",
        "Replicas of job {{ $labels.job }} disagree on the number of shards",
        f"""The replicas of job {{{{ $labels.job }}}} report different total_shards:
        {{{{ range {instances} | sortByLabel "instance" }}}}{{{{ .Labels.instance }}}} says
        {{{{ .Value }}}}; {{{{ end }}}}organisations polled twice: {_org_list(twice, "none")};
        polled by nobody (exported in the last {config.lost_window}, not now):
        {_lost_orgs(config)}. Set total_shards to the number of replicas on every replica.""",
        config.health_uid,
        ("job",),
    )


def _shard_missing(config: Config) -> dict[str, Any]:
    by = ", ".join(config.fleet_labels)
    ordinal = q.raw(config, "shard_ordinal")
    total = q.raw(config, "total_shards")
    # One series per distinct ordinal with the ordinal as label, so two replicas claiming the
    # same shard count once; then 2^total - 1 - sum(2^ordinal) is 0 exactly when every shard
    # below the count has a replica.
    distinct = (
        f"max by ({by}, ordinal) (\n"
        f'  count_values without () ("ordinal", {ordinal}) * ignoring (ordinal) group_left {ordinal}\n'
        ")"
    )
    metric = q.metric("shard_ordinal")
    configured = t.query(f"max({q.metric('total_shards')}{{job=%q}})", "$labels.job")
    present = t.query(f'count_values by ({by}) ("ordinal", {metric}{{job=%q}})', "$labels.job")
    # The replicas whose last reported shard has no replica now.
    gone = t.query(
        f'count_values without () ("ordinal", last_over_time({metric}{{job=%q}}[{config.lost_window}])) '
        f'unless on (job, ordinal) count_values by (job) ("ordinal", {metric}{{job=%q}})',
        "$labels.job $labels.job",
    )
    return alert(
        config,
        "ShardMissing",
        f"2 ^ max by ({by}) ({total}) - 1\n-\nsum by ({by}) (2 ^ {distinct})\n!= 0",
        "Job {{ $labels.job }} has shards without a running replica",
        f"""Job {{{{ $labels.job }}}} is configured for {{{{ with {configured} }}}}{{{{ (first
        .).Value }}}}{{{{ end }}}} shards but Prometheus scrapes replicas for ordinals {{{{ range
        {present} | sortByLabel "ordinal" }}}}{{{{ .Labels.ordinal }}}} {{{{ end }}}}only (bitmask
        difference {{{{ $value }}}}); last seen in the last {config.lost_window}: {{{{ with {gone}
        }}}}{{{{ range sortByLabel "ordinal" . }}}}shard {{{{ .Labels.ordinal }}}} on
        {{{{ .Labels.instance }}}}; {{{{ end }}}}{{{{ else }}}}no replica of a missing shard;
        {{{{ end }}}}organisations polled by nobody: {_lost_orgs(config, "none that Prometheus saw (see the runbook)")}.""",
        config.health_uid,
        ("job",),
    )


def _config_reload_failed(config: Config) -> dict[str, Any]:
    reloaded = q.raw(config, "config_last_reload_successful")
    success = t.value_of(
        t.instance_query("alvaria_emailqueue_config_last_reload_success_timestamp_seconds{}"),
        "humanizeTimestamp",
        "unknown",
    )
    return alert(
        config,
        "ConfigReloadFailed",
        f"{reloaded} == 0",
        "Configuration reload of {{ $labels.instance }} failed; the previous one keeps running",
        f"""The last reload (SIGHUP or POST /-/reload) of {{{{ $labels.instance }}}} (job
        {{{{ $labels.job }}}}) failed validation; it keeps running the configuration it last loaded
        successfully, at {success}. New or changed targets and rotated secrets are not in
        effect.""",
        config.health_uid,
        ("job",),
    )


def groups(config: Config) -> list[dict[str, Any]]:
    """The fleet alert group."""
    return [
        {
            "name": "alvaria-emailqueue.fleet",
            "rules": [
                _organisation_lost(config),
                _sharding_mismatch(config),
                _shard_missing(config),
                _config_reload_failed(config),
            ],
        }
    ]
