"""The local spool: where acknowledged events wait while ClickHouse is unavailable.

Append-only JSON-lines files in the spool directory, one line per group commit, fsynced
before the requests in it are acknowledged. The drainer (collector/writer.py) rotates the
current file, inserts closed files into ClickHouse in name order and deletes each file only
after its insert succeeded. A crash at any point leaves files that are replayed at start; a
replay may insert rows twice, which the storage's deduplication absorbs (exactly once on read).
A torn last line (the process died while writing it) was never acknowledged and is skipped.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Rows = list[list[Any]]


class SpoolFull(Exception):
    """The spool has reached STEPWATCH_SPOOL_MAX_BYTES."""


class Spool:
    def __init__(self, directory: Path, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # append runs in an executor thread, rotate on another
        self._current: Path | None = None
        self._file: Any = None
        self.bytes = sum(p.stat().st_size for p in self.files())
        self.events = sum(len(v) + len(s) for path in self.files() for v, s in self.read(path))

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("spool-*.jsonl"))

    def append(self, visits: list[tuple[Any, ...]], sessions: list[tuple[Any, ...]]) -> None:
        """Write one record durably (fsync) or raise SpoolFull."""
        line = (json.dumps({"v": visits, "s": sessions}, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self.bytes + len(line) > self.max_bytes:
                raise SpoolFull(f"spool is full ({self.bytes} bytes)")
            if self._file is None:
                self._current = self.directory / f"spool-{time.time_ns():020d}.jsonl"
                self._file = open(self._current, "ab")  # noqa: SIM115 - kept open across appends
                _fsync_dir(self.directory)
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.bytes += len(line)
            self.events += len(visits) + len(sessions)

    def rotate(self) -> list[Path]:
        """Close the file being appended to; return every closed file, oldest first."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file, self._current = None, None
            return self.files()

    @staticmethod
    def read(path: Path) -> Iterator[tuple[Rows, Rows]]:
        with open(path, "rb") as f:
            for raw in f:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue  # torn write from a crash: never acknowledged
                yield record.get("v", []), record.get("s", [])

    def remove(self, path: Path) -> None:
        with self._lock:
            size = path.stat().st_size
            count = sum(len(v) + len(s) for v, s in self.read(path))
            path.unlink()
            self.bytes = max(0, self.bytes - size)
            self.events = max(0, self.events - count)

    def close(self) -> None:
        self.rotate()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
