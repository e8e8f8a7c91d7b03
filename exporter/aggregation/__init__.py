"""Aggregation: the emails of one poll and `now` in, a `Snapshot` out; pure, no I/O.

Modules:
- ``builder``: the hot loop over a poll's emails into a `Snapshot`, and the flow diff between two
- ``groups``: raw item labels to bounded group keys, and their running totals
- ``labels``: label values that come from upstream, made safe to export
- ``series_budget``: what each label combination costs, and which ones fold into ``other``
- ``pickups``: the emails an agent took since the previous poll, each judged against its target
- ``dating``: when things happened to an email, read from its timestamps (one home per rule)
- ``handling``: the handling KPIs (SPEC §10) from the same pass: per-email memory, observations
"""
