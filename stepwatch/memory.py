"""How a stepwatch process gives memory back: it keeps what it freed, to use again.

The analysis allocates and frees arrays of millions of sessions on every run (tens of MB each).
glibc's malloc serves blocks that large with fresh mmap()s and gives them back to the system on
free, so every run touches new pages. A first touch costs a page fault and zeroing everywhere,
and far more on a virtual machine whose memory the host backs lazily: on the 2-core VM of
docs/performance.md, an array of 3.2 million numbers costs 410 ms the first time its memory is
touched and 7 ms when it reuses memory the process had freed. So the commands other than `serve`
(`stepwatch analyze`, `stats --fresh`, ...) keep large blocks on the heap and do not trim it:
their resident size stays at the high-water mark of a run, which is the figure the analysis's
memory target is about (peak RSS), and the next run in the process reuses those pages.

`stepwatch serve` is tuned the other way, for ingest (collector/memory.py): it gives freed blocks
of 4 MiB and more back at once, so the schedule's runs inside it touch fresh pages (not measured;
the like-for-like read keeps its arrays small for that reason: stepwatch/stratified_read.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# glibc's mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Have malloc serve every block from the heap and never shrink it (glibc only; elsewhere
    nothing changes). Returns whether it took effect."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): its own defaults stay
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    if not done:
        log.debug("malloc keeps its defaults (mallopt refused)")
    return done
