"""Tests of the documentation site and its generated references."""
