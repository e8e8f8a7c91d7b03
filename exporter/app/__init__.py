"""The app: the command line and the daemon, wired from the stages below.

Modules:
- ``main``: the command line: load the settings, then check them, check the connection, poll
  once, or run the daemon
- ``daemon``: one exporter process (store, pollers, registry, web app): start, serve, reload, once
- ``wiring``: the objects built from the settings: pollers, collectors, registry, aggregation
  options
- ``check_connection``: ``--check-connection``, step by step for every organisation
- ``findings``: what the answers ``--check-connection`` gets mean, in words a user can act on
- ``log``: structlog configuration (console on a TTY, JSON lines otherwise)
- ``signals``: what each signal does (stop, reload, log)
- ``runtime``: interpreter settings that keep the event loop answering while threads run Python
"""
