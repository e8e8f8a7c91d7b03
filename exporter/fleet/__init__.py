"""The fleet: the organisations this replica polls, and how a new configuration replaces them.

Modules:
- ``pollers``: the running set of pollers, planned from the settings and swapped in one step
- ``shards``: which organisations this replica polls (rendezvous hashing of API-key fingerprints)
- ``reload``: SIGHUP and ``POST /-/reload``: read and validate everything, then swap
- ``policies``: the validated service-level settings as compiled rules and business clocks
"""
