"""stepwatch/memory.py: a process that runs the analysis keeps the memory it frees."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import sys
import numpy as np
from stepwatch import memory
if sys.argv[1] == "keep":
    assert memory.keep_freed_memory()
def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
before = resident_mb()
block = np.ones(8_000_000)  # 61 MB, touched
del block
print(round(resident_mb() - before))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and /proc: Linux")
def test_the_memory_of_a_freed_array_stays_with_the_process_for_the_next_run() -> None:
    kept, given_back = (int(subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True,
                                           check=True).stdout) for mode in ("keep", "default"))
    assert kept >= 55  # still resident: the next array of that size reuses it
    assert given_back < 10  # glibc's default: a block that large goes back to the system when freed
