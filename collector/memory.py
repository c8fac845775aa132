"""Keep the collector's resident memory close to what it actually uses.

Two allocators live in the `stepwatch serve` process with the embedded engine:

- glibc malloc, for Python's objects above 512 bytes (request bodies, the joined group-commit
  and spool blocks) and for every C extension. Left alone it gives each thread that allocates an
  arena of its own (up to 8 per core), raises its mmap threshold up to 32 MB after large blocks are
  freed (so the next ones come from an arena and stay there), and trims an arena only when 2x that
  threshold is free at its top. In `benchmarks/ingest.py` it held 80-100 MB of which about half
  was free.
- the engine's own jemalloc (linked into chdb's library with its symbols hidden, so not reachable
  with ctypes), for everything ClickHouse allocates. It keeps freed pages ("dirty") for
  `dirty_decay_ms`, 5 s in chdb's build; it reads `JE_MALLOC_CONF` once, when it starts.

Measured with benchmarks/ingest.py (2 cores, shared machine, runs back to back): the collector's
anonymous memory at the end of the run 190-230 MB instead of 260-280, its peak RSS 540-560 MB
instead of 580-610. `SYSTEM JEMALLOC PURGE` after each insert lowered the end figure by another
15-25 MB but not the peak, for more CPU: not done.

`tune_allocators` is called where `serve` starts, before the engine is loaded and before the
threads that allocate exist; `release_free_memory` after each insert of the spool into
ClickHouse, in the storage worker thread (malloc_trim takes the arenas' locks: never on the
event loop). Both are no-ops where they do not apply: another libc than glibc (no mallopt or
malloc_trim), a ClickHouse server instead of the embedded engine (no jemalloc of ours to tune
there), or an operator's own `JE_MALLOC_CONF` / `GLIBC_TUNABLES`, which win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
import time
from typing import Any

log = logging.getLogger("stepwatch.collector")

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

# Blocks of 4 MiB and more are mmapped and unmapped when freed, instead of staying in an arena (a
# fixed threshold also turns off glibc's dynamic one, which climbs to 32 MB); free memory at the top
# of an arena beyond 1 MiB goes back to the system; 2 arenas for the few threads that allocate.
# 256 KiB saved a little more memory but cost 10-20% more CPU per request (an mmap and munmap for
# every spool block; docs/performance.md).
GLIBC_MALLOPT = {M_MMAP_THRESHOLD: 4 * 1024 * 1024, M_TRIM_THRESHOLD: 1024 * 1024, M_ARENA_MAX: 2}

# The engine's jemalloc: freed pages go back to the system after 1 s instead of 5.
ENGINE_MALLOC_CONF = "dirty_decay_ms:1000"

# release_free_memory runs at most this often (the shipper inserts every STEPWATCH_FLUSH_MS).
RELEASE_INTERVAL_S = 1.0


def glibc() -> Any | None:
    """The C library if it is glibc (it has mallopt and malloc_trim), else None."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not all(hasattr(libc, symbol) for symbol in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


def tune_allocators(embedded: bool, environ: Any = None, libc: Any = "find",
                    engine_loaded: bool | None = None) -> list[str]:
    """Apply the settings above; returns what was applied, for the log."""
    environ = os.environ if environ is None else environ
    libc = glibc() if libc == "find" else libc
    engine_loaded = "chdb" in sys.modules if engine_loaded is None else engine_loaded
    applied = []
    if libc is not None and not environ.get("GLIBC_TUNABLES"):
        if all(libc.mallopt(param, value) == 1 for param, value in GLIBC_MALLOPT.items()):
            applied.append("glibc mallopt")
    if embedded and "JE_MALLOC_CONF" not in environ and not engine_loaded:
        environ["JE_MALLOC_CONF"] = ENGINE_MALLOC_CONF  # read when chdb's library is loaded
        applied.append(f"JE_MALLOC_CONF={ENGINE_MALLOC_CONF}")
    return applied


class MemoryReleaser:
    """Gives freed memory back to the system after inserts: glibc's malloc_trim(0)."""

    def __init__(self, interval_s: float = RELEASE_INTERVAL_S, libc: Any = "find"):
        self.libc = glibc() if libc == "find" else libc
        self.interval_s = interval_s
        self._last = float("-inf")
        self._lock = threading.Lock()

    def due(self) -> bool:
        return self.libc is not None and time.monotonic() - self._last >= self.interval_s

    def __call__(self) -> bool:
        """Trim if the last trim is older than interval_s; True when it trimmed."""
        if self.libc is None:
            return False
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval_s:
                return False
            self._last = now
        self.libc.malloc_trim(0)
        return True
