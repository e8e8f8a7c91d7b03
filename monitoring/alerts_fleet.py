"""Alerts about a sharded fleet of exporters (kube-state-metrics style).

Each replica exports `alvaria_emailqueue_shard_ordinal` (its shard) and
`alvaria_emailqueue_total_shards`. Replicas of one deployment (same `fleet_labels`) must agree
on the count, and every ordinal below it must have a replica Prometheus can scrape: otherwise
the organisations of that shard are polled by nobody.
"""

from __future__ import annotations

from typing import Any

from monitoring import promql as q
from monitoring import templates as t
from monitoring.alerts_exporter import alert
from monitoring.config import Config


def _sharding_mismatch(config: Config) -> dict[str, Any]:
    by = ", ".join(config.fleet_labels)
    total = q.raw(config, "total_shards")
    return alert(
        config,
        "ShardingMismatch",
        f"stdvar by ({by}) ({total}) != 0",
        "Replicas of job {{ $labels.job }} disagree on the number of shards",
        f"""The replicas of job {{{{ $labels.job }}}} report different total_shards:
        {{{{ range query (printf "count_values by ({by}) (\\"total\\", {q.metric("total_shards")}{{job=%q}})"
        $labels.job) | sortByLabel "total" }}}}{{{{ .Value }}}} say {{{{ .Labels.total }}}}; {{{{ end
        }}}}organisations can be polled twice or not at all. Set total_shards to the number of
        replicas on every replica.""",
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
    return alert(
        config,
        "ShardMissing",
        f"2 ^ max by ({by}) ({total}) - 1\n-\nsum by ({by}) (2 ^ {distinct})\n!= 0",
        "Job {{ $labels.job }} has shards without a running replica",
        f"""Job {{{{ $labels.job }}}} is configured for {{{{ with query (printf
        "max({q.metric("total_shards")}{{job=%q}})" $labels.job) }}}}{{{{ (first .).Value }}}}{{{{ end }}}}
        shards but Prometheus scrapes replicas for ordinals {{{{ range query (printf
        "count_values by ({by}) (\\"ordinal\\", {q.metric("shard_ordinal")}{{job=%q}})" $labels.job)
        | sortByLabel "ordinal" }}}}{{{{ .Labels.ordinal }}}} {{{{ end }}}}only (bitmask difference {{{{ $value }}}}); the
        organisations of the missing shards are not polled.""",
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
                _sharding_mismatch(config),
                _shard_missing(config),
                _config_reload_failed(config),
            ],
        }
    ]
