"""Grafana dashboards for the Alvaria EmailQueue exporter, written as code."""
