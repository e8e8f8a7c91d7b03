"""Renders this replica's shard, target count and reload status at scrape time.

Sample::

    alvaria_emailqueue_shard_ordinal 1.0
    alvaria_emailqueue_total_shards 3.0
    alvaria_emailqueue_targets 42.0
    alvaria_emailqueue_config_last_reload_successful 1.0
    alvaria_emailqueue_config_last_reload_success_timestamp_seconds 1.7801e+09
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.domain import names
from exporter.metrics.families import Block, Family, to_metric_family
from exporter.polling.store import Store

SHARD_ORDINAL = Family.gauge(names.SHARD_ORDINAL, "This replica's shard.")
TOTAL_SHARDS = Family.gauge(names.TOTAL_SHARDS, "The configured number of shards.")
TARGETS = Family.gauge(names.TARGETS, "Organisations this replica polls.")
RELOAD_OK = Family.gauge(
    names.CONFIG_LAST_RELOAD_SUCCESSFUL,
    "1 when the last configuration reload (or the start) succeeded.",
)
RELOAD_TIME = Family.gauge(
    names.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP,
    "Unix time of the last successful configuration load.",
)


class FleetCollector(Collector):
    """Shard and reload gauges; only reads the store."""

    def __init__(self, store: Store, denied: frozenset[str] = frozenset()) -> None:
        self._store = store
        self._denied = denied  # families on metric_denylist

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's view of `blocks()`."""
        for block in self.blocks():
            yield to_metric_family(block)

    def blocks(self) -> Iterator[Block]:
        fleet = self._store.fleet
        values = (
            (SHARD_ORDINAL, fleet.shard),
            (TOTAL_SHARDS, fleet.total_shards),
            (TARGETS, len(self._store.orgs)),
            (RELOAD_OK, 1 if fleet.last_reload_successful else 0),
            (RELOAD_TIME, fleet.last_reload_success),
        )
        for family, value in values:
            if family.name in self._denied:
                continue
            block = family.block()
            if value is not None:
                block.add((), value)
            yield block


def declared_families() -> tuple[Family, ...]:
    """The fleet collector's families (for metric_denylist)."""
    return (SHARD_ORDINAL, TOTAL_SHARDS, TARGETS, RELOAD_OK, RELOAD_TIME)
