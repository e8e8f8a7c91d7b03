"""Tests of the domain: the scrubber of upstream text."""
