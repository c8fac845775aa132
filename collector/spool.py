"""The spool: acknowledged events that are not in ClickHouse yet, on local disk.

In `wal` mode every group commit is written here and fsynced before its requests are answered;
in `insert` mode only while ClickHouse is unavailable. The shipper (collector/writer.py)
rotates the current file, inserts the closed files into ClickHouse in name order and deletes a
file only after its insert succeeded. A crash at any point leaves files that are replayed at
the next start; a replay may insert rows twice, which storage deduplication absorbs.

A file is a sequence of records, one per group commit and table:

    V <rows> <bytes>\\n<JSONEachRow block of step visits>\\n
    S <rows> <bytes>\\n<JSONEachRow block of session events>\\n
    v <rows> <bytes>\\n<JSONCompactEachRow block of step visits, every column in order>\\n
    s <rows> <bytes>\\n<JSONCompactEachRow block of session events, every column in order>\\n

The collector writes the compact records (a third of the bytes; see collector/events.py);
files written before it did hold V and S records, and are replayed as they are.

The block is exactly what is inserted into ClickHouse, so writing and replaying cost no work
per row. A record cut short by a crash (fewer bytes than its header says) was never
acknowledged, because the answer waits for the fsync, and is skipped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

TABLES = {b"V": ("visits", False), b"S": ("sessions", False), b"v": ("visits", True), b"s": ("sessions", True)}


class SpoolFull(Exception):
    """The spool has reached STEPWATCH_SPOOL_MAX_BYTES."""


@dataclass(frozen=True)
class Record:
    kind: str  # "visits" or "sessions"
    rows: int
    block: bytes
    compact: bool = False  # JSONCompactEachRow rows of every column, else JSONEachRow


class Spool:
    def __init__(self, directory: Path, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # appends run in the spool thread, rotation in the shipper
        self._current: Path | None = None
        self._file: IO[bytes] | None = None
        self._rows = {path: sum(r.rows for r in self.read(path)) for path in self.files()}
        self.bytes = sum(path.stat().st_size for path in self._rows)

    @property
    def events(self) -> int:
        """Rows in the spool: acknowledged, not yet known to be in ClickHouse."""
        return sum(self._rows.values())

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("spool-*.log"))

    def append(self, visits: bytes, visit_rows: int, sessions: bytes, session_rows: int,
               compact: bool = False) -> None:
        """Write one group commit durably (fsync), or raise SpoolFull and write nothing."""
        parts = []
        if visit_rows:
            parts += [b"v" if compact else b"V", b" %d %d\n" % (visit_rows, len(visits)), visits, b"\n"]
        if session_rows:
            parts += [b"s" if compact else b"S", b" %d %d\n" % (session_rows, len(sessions)), sessions, b"\n"]
        data = b"".join(parts)
        with self._lock:
            if self.bytes + len(data) > self.max_bytes:
                raise SpoolFull(f"spool is full ({self.bytes} bytes)")
            if self._file is None:
                self._current = self.directory / f"spool-{time.time_ns():020d}.log"
                self._file = open(self._current, "ab")  # noqa: SIM115 - kept open across appends
                _fsync_dir(self.directory)
            assert self._current is not None
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.bytes += len(data)
            self._rows[self._current] = self._rows.get(self._current, 0) + visit_rows + session_rows

    def rotate(self) -> list[Path]:
        """Close the file being appended to; return every file to ship, oldest first."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file, self._current = None, None
            return sorted(self._rows)

    @staticmethod
    def read(path: Path) -> Iterator[Record]:
        with open(path, "rb") as f:
            while header := f.readline():
                try:
                    tag, rows, size = header.split()
                    kind, compact = TABLES[tag]
                    block = f.read(int(size))
                    complete = len(block) == int(size) and f.read(1) == b"\n"
                except (ValueError, KeyError):
                    return  # a torn header: the rest of the file was never acknowledged
                if not complete:
                    return
                yield Record(kind, int(rows), block, compact)

    def remove(self, path: Path) -> None:
        """Delete a file whose rows are in ClickHouse now."""
        with self._lock:
            size = path.stat().st_size
            path.unlink()
            self.bytes = max(0, self.bytes - size)
            self._rows.pop(path, None)

    def close(self) -> None:
        self.rotate()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
