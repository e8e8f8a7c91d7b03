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

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from exporter import names
from exporter.store import Store


class FleetCollector(Collector):
    """Shard and reload gauges; only reads the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fleet = self._store.fleet
        yield GaugeMetricFamily(names.SHARD_ORDINAL, "This replica's shard.", value=fleet.shard)
        yield GaugeMetricFamily(
            names.TOTAL_SHARDS, "The configured number of shards.", value=fleet.total_shards
        )
        yield GaugeMetricFamily(
            names.TARGETS, "Organisations this replica polls.", value=len(self._store.orgs)
        )
        yield GaugeMetricFamily(
            names.CONFIG_LAST_RELOAD_SUCCESSFUL,
            "1 when the last configuration reload (or the start) succeeded.",
            value=1 if fleet.last_reload_successful else 0,
        )
        if fleet.last_reload_success is not None:
            yield GaugeMetricFamily(
                names.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP,
                "Unix time of the last successful configuration load.",
                value=fleet.last_reload_success,
            )
