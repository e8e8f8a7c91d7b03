"""Monitoring content of the exporter, generated from one configuration (`monitoring.config`)."""
