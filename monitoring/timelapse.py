"""A time-lapse copy of a configuration: every duration divided by one factor.

The end-to-end test runs the exporter with a 1s poll interval against rules generated with
every `for`, window and fallback divided by 30 (the default poll interval), so the timings it
measures are the production timings scaled down, not a hand-shortened copy.
"""

from __future__ import annotations

import dataclasses

from monitoring.config import AlertSettings, BurnWindow, Config
from monitoring.durations import scaled


def time_lapse(config: Config, factor: float) -> Config:
    """`config` with every duration (and the fallback intervals) divided by `factor`."""

    def d(value: str) -> str:
        return scaled(value, 1 / factor)

    return dataclasses.replace(
        config,
        fallback_poll_interval_seconds=config.fallback_poll_interval_seconds / factor,
        fallback_stale_after_seconds=config.fallback_stale_after_seconds / factor,
        reason_window=d(config.reason_window),
        backlog_growing_window=d(config.backlog_growing_window),
        not_draining_window=d(config.not_draining_window),
        burn_windows=tuple(
            BurnWindow(d(w.long), d(w.short), w.factor, w.severity, d(w.for_))
            for w in config.burn_windows
        ),
        alerts={
            name: AlertSettings(d(a.for_), a.severity, d(a.keep_firing_for))
            for name, a in config.alerts.items()
        },
        lost_window=d(config.lost_window),
        scrape_interval=d(config.scrape_interval),
        evaluation_interval=d(config.evaluation_interval),
        group_wait=d(config.group_wait),
        group_interval=d(config.group_interval),
        repeat_interval=d(config.repeat_interval),
        service_level_group_wait=d(config.service_level_group_wait),
        service_level_group_interval=d(config.service_level_group_interval),
    )
