"""Prometheus exporter for the Alvaria Cloud EmailQueue API.

The code is grouped by stage into subpackages, each importing only the stages below it; the
layout table of docs/development.md lists them, and each subpackage's docstring lists its modules.

Modules:
- ``__main__``: ``python -m exporter``, the command line of `exporter.app.main`
"""

__version__ = "0.1.0"
