"""Prometheus exporter for the Alvaria Cloud EmailQueue API."""

__version__ = "0.1.0"
