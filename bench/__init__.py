"""Benchmarks of the exporter against a static simulated queue; run with `python -m bench`."""
