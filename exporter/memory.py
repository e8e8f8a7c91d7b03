"""Large buffers go back to the operating system when they are freed (glibc only).

Response bodies of up to `max_response_bytes` are read into one growing buffer per request.
glibc serves blocks of 128 KiB and more with mmap and unmaps them on free, but after freeing
one it raises that threshold (up to 32 MiB), so later bodies come from the heap instead, which
fragments and is rarely returned: a daemon reading oversized bodies every poll grew without
bound. A fixed threshold keeps every block of 1 MiB and more mapped on its own: a freed body
leaves the process at once, and a growing one is remapped instead of copied.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1024 * 1024


def map_large_blocks() -> bool:
    """Fix glibc's mmap threshold at 1 MiB; False where that does not apply (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl has no mallopt: nothing to tune there
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
