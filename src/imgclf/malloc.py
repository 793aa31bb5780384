"""glibc's malloc told to keep the memory of freed image batches (set as the command starts).

By default glibc serves every allocation over 128 KiB-32 MiB from its own mmap and gives it back
when freed, and trims the heap's top: each batch's tensors were then faulted in page by page
again (measured: ~40 % of a training run's CPU time on the 2-core machine). These are the
GLIBC_TUNABLES glibc.malloc.mmap_max=0 and trim_threshold, set through mallopt() inside the
process, so the command no longer starts Python twice to put them in its environment.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_MAX = -4
KEEP_BELOW = 2**31 - 1  # bytes of free heap top kept rather than trimmed (mallopt takes an int)


def keep_freed_memory() -> bool:
    """True when glibc took both settings; False elsewhere (macOS, musl), where nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # this process's own C library
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BELOW))
