"""Tests of polling."""
