"""Tests of servicelevels."""
