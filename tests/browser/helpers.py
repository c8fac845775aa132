"""What the browser tests of the tracker have in hand: the collector as they see it, a fake clock,
and `expect_events` (in the style of plausible's expectPlausibleInAction)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.browser.servers import CollectorProxy

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SAFE_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class SiteKeys:
    name: str
    key: str
    secret: str


class Collector:
    """The collector as the tests see it: where the tracker loads from, and what got stored."""

    def __init__(self, proxy: CollectorProxy, sites: dict[str, SiteKeys], read: Callable[[str], list[dict[str, Any]]]):
        self.proxy = proxy
        self.sites = sites
        self._read = read
        self.cli: Callable[..., str] | None = None

    @property
    def tracker_url(self) -> str:
        return self.proxy.url + "/tracker.js"

    def visits(self, manager: str) -> list[dict[str, Any]]:
        """The stored visits of `manager` (latest report of each), oldest first."""
        assert SAFE_ID.match(manager), manager
        rows = self._read(manager)
        for row in rows:
            row["started_at"] = _epoch_ms(row["started_at"])
            row["final"] = bool(row.get("final", False))  # absent from checkpoints: false
        return sorted(rows, key=lambda row: (row["started_at"], row["seq"]))

    def wait_for_visits(
        self,
        manager: str,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 15,
        pump: Callable[[], Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Poll the stored visits until `until(visits)` holds; fail showing them otherwise.

        `pump` runs between polls: Clock.settle, when the page still has to send (on a paused
        clock its flush timer fires only when the test moves time)."""
        deadline = time.monotonic() + timeout
        while True:
            visits = self.visits(manager)
            if until(visits) or time.monotonic() > deadline:
                break
            if pump is not None:
                pump()
            else:
                time.sleep(0.25)
        assert until(visits), "stored visits never matched:\n" + _table(visits) + "\n" + self.proxy_log()
        return visits

    def proxy_log(self) -> str:
        return "batches seen by the collector proxy:\n" + "\n".join(
            f"  {b.status} {b.body}" for b in self.proxy.batches
        )


def _epoch_ms(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


def _table(visits: list[dict[str, Any]]) -> str:
    return (
        "\n".join(
            f"  {v['step']:<15} seq={v['seq']:<3} final={v['final']!s:<5} active={v['active_ms']:<7} "
            f"idle={v['idle_ms']:<7} hidden={v['hidden_ms']:<7} customer={str(v['customer'])[:12]} "
            f"session={str(v['session_id'])[:8]} path={v['path']}"
            for v in visits
        )
        or "  (none)"
    )


def kill_browser(user_data_dir: Path) -> None:
    """SIGKILL the Chromium started on `user_data_dir` (found by its command line): a crash, with
    no pagehide or anything else the page could still run."""
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"--user-data-dir={user_data_dir}".encode() in cmdline:
            os.kill(int(proc.name), signal.SIGKILL)
            killed += 1
    assert killed, f"no Chromium runs on {user_data_dir}"


def page_errors(page: Any) -> list[str]:
    """Uncaught errors of the page so far (the fake CRM's own count too)."""
    if not hasattr(page, "_stepwatch_errors"):
        page._stepwatch_errors = []
    return page._stepwatch_errors


class Clock:
    """Playwright's fake clock for one page, paused: time moves only when the test says so.

    The Python API takes seconds; performance.now(), Date and the page's timers all follow it,
    across navigations too. Real time still passes for the network, so `settle()` lets requests
    that a timer started finish.
    """

    def __init__(self, page: Any):
        self.page = page
        # The collector refuses timestamps more than 5 minutes ahead of its own clock: start the
        # fake clock in the past so that long scripted stays stay in the past too.
        self.start = time.time() - 6 * 3600
        page.clock.install(time=self.start)
        page.clock.pause_at(self.start + 1)
        # Playwright's fake performance.timeOrigin reads -1 while a page's first scripts run (and
        # the tracker reads it then); a browser's is never wrong. Pin it to the fake clock.
        page.add_init_script(
            "Object.defineProperty(performance, 'timeOrigin', {configurable: true,"
            " get: () => Date.now() - performance.now()})"
        )

    def run(self, ms: int) -> None:
        """Advance fake time by `ms`, firing every timer due (the tracker's checkpoints and flushes)."""
        self.page.clock.run_for(ms)

    def settle(self, real_seconds: float = 0.5) -> None:
        """Let real time pass for requests in flight, firing the tracker's 2 s flush on the way."""
        self.page.clock.run_for(2100)
        self.page.wait_for_timeout(real_seconds * 1000)


def tracker_ready(page: Any, timeout: float = 10) -> None:
    """Wait until the tracker loaded its config and replaced the snippet's queueing stub.

    (Polled with evaluate: wait_for_function evaluates strings in the page, which a strict CSP
    forbids.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate("typeof stepwatch == 'function' && !('q' in stepwatch)"):
        assert time.monotonic() < deadline, "the tracker did not start"
        page.wait_for_timeout(25)


def expect_events(
    collector: Collector,
    action: Callable[[], Any],
    expected: list[dict[str, Any]] = (),  # type: ignore[assignment]
    refuted: list[dict[str, Any]] = (),  # type: ignore[assignment]
    pump: Callable[[], Any] | None = None,
    timeout: float = 10,
) -> list[dict[str, Any]]:
    """Run `action`, then wait until the collector received events matching each of `expected`
    (partial dicts: only the keys given are compared) and none matching `refuted`.

    Like plausible's expectPlausibleInAction: on failure it prints every event it saw. `pump`
    runs between polls (e.g. Clock.settle, so that a paused clock still lets flushes happen).
    """
    before = len(collector.proxy.events())
    action()
    deadline = time.monotonic() + timeout
    while True:
        seen = collector.proxy.events()[before:]
        missing = [e for e in expected if not any(_matches(event, e) for event in seen)]
        if not missing or time.monotonic() > deadline:
            break
        if pump is not None:
            pump()
        else:
            time.sleep(0.1)
    wrong = [e for e in refuted if any(_matches(event, e) for event in seen)]
    if missing or wrong:
        shown = "\n".join("  " + json.dumps(e, sort_keys=True) for e in seen) or "  (none)"
        pytest.fail(f"expected but not sent: {missing}\nsent but refuted: {wrong}\nevents sent:\n{shown}")
    return seen


def _matches(event: dict[str, Any], partial: dict[str, Any]) -> bool:
    return all(event.get(key) == value for key, value in partial.items())
