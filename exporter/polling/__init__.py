"""Polling: fetch, aggregate, store; the one error boundary of a poll.

Modules:
- ``poller``: one organisation's poll loop: fetch → aggregate → store
- ``store``: the latest snapshot, counters and poll status of every organisation
- ``histograms``: the histograms the store keeps (request durations, pickup waits, handling KPIs)
"""
