"""Metrics: the families, declared once, filled from the store at scrape time, and rendered.

Modules:
- ``families``: the `Family`/`Block` API, and the series each family costs
- ``queue``: the queue, flow, poll and request families of every organisation
- ``handling``: the handling KPI families (SPEC §10)
- ``servicelevels``: the service-level and pickup families
- ``fleet``: this replica's shard, target count and reload status
- ``buildinfo``: where this build came from
- ``textformat``: blocks as Prometheus text 0.0.4 or OpenMetrics 1.0, byte for byte
- ``lines``: how series become lines (templates, fragments shared by every organisation)
- ``gzipped``: a body's gzip joined from pieces compressed once and kept
"""
