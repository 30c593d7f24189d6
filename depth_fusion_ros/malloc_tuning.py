"""Keep the node's multi-megabyte message buffers in the heap (glibc only).

Each pair allocates several 0.3-2.6 MB buffers (serialised clouds and images inside rclpy/rmw).
glibc serves such sizes with a fresh mmap and unmaps them on free, so every pair pays the page
faults of touching them again: about half of the node's per-pair overhead at 640x256. Raising the
mmap and trim thresholds lets freed buffers be reused from the heap instead. Elsewhere (musl,
macOS) this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3


def keep_large_buffers_in_heap(mmap_threshold_bytes: int = 32 << 20) -> bool:
    """Serve allocations below `mmap_threshold_bytes` from the heap and keep freed memory.

    Returns True if glibc accepted both settings.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold_bytes)
                and mallopt(_M_TRIM_THRESHOLD, 4 * mmap_threshold_bytes))
