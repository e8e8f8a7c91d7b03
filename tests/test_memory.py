"""Large freed buffers leave the process (glibc's mmap threshold is fixed at start)."""

from __future__ import annotations

import platform

import pytest

from exporter.memory import map_large_blocks


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_the_mmap_threshold_is_fixed_on_glibc() -> None:
    assert map_large_blocks() is True
