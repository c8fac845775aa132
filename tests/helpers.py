"""Helpers for tests that run stepwatch as a real process: the CLI, `serve`, plain HTTP calls."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def run_cli(*argv: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str, str]:
    """Run the installed `stepwatch` command in a subprocess."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "stepwatch", *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


class Server:
    """A `stepwatch serve` subprocess on a free loopback port."""

    def __init__(self, proc: Any, url: str, stderr_path: Path):
        self.proc, self.url, self.stderr_path = proc, url, stderr_path

    def logs(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextmanager
def serve(env: dict[str, str], tmp: Path, timeout: float = 60) -> Iterator[Server]:
    """Start `stepwatch serve` with STEPWATCH_* overrides in `env`; stop it (SIGTERM) afterwards."""
    import selectors
    import subprocess
    import sys

    stderr_path = tmp / f"serve-{uuid.uuid4().hex[:6]}.log"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stepwatch", "serve"],
            env={**os.environ, "STEPWATCH_HOST": "127.0.0.1", "STEPWATCH_PORT": "0", **env},
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    url = ""
    # a selector, not select.select: a test process that holds over 1,024 files (the embedded
    # engine's) gets pipe numbers select() refuses
    with selectors.DefaultSelector() as waiting:
        waiting.register(proc.stdout, selectors.EVENT_READ)
        while not url and time.monotonic() < deadline and proc.poll() is None:
            if waiting.select(0.5):
                line = proc.stdout.readline()
                if "serving on" in line:
                    url = line.split("serving on ")[1].split()[0]
    if not url:
        proc.kill()
        proc.wait()
        raise RuntimeError("stepwatch serve did not start:\n" + stderr_path.read_text())
    server = Server(proc, url, stderr_path)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A blocking HTTP call for subprocess tests; returns (status, parsed JSON or text)."""
    import json
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")
