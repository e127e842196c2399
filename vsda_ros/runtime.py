"""Process-wide runtime tuning shared by the node and the command-line tools.

PyTorch on CPU allocates and frees multi-megabyte tensors on every frame. With glibc's default
(dynamic) mmap threshold those are ``mmap``/``munmap``-ed each time, and the page faults cost
more than the convolutions: on a 2-core machine ESPNet-CamVid at 480×360 takes 65.6 ms per
frame with the defaults and 42.7 ms after :func:`tune_allocator` (measured in this repo, see
README). Raising the mmap and trim thresholds keeps freed blocks in the heap for reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DONE = False


def tune_allocator(threshold_bytes: int = 1 << 30) -> bool:
    """Keep large freed blocks in the glibc heap (no-op elsewhere); True if applied.

    Call it early, before the model is loaded. Memory is then reused instead of returned to the
    OS, so RSS settles at the working-set peak instead of oscillating.
    """
    global _DONE
    if _DONE:
        return True
    name = ctypes.util.find_library('c')
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = (
            libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(threshold_bytes)) == 1
            and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(threshold_bytes)) == 1
        )
    except (OSError, AttributeError):
        return False
    _DONE = ok
    return ok
