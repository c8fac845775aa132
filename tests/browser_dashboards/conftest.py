"""Browser tests of the dashboards: `stepwatch demo` data, `stepwatch serve`, Debian's Chromium.

One demo store and one server for the package (the demo takes a while to build); Playwright's sync
API is opened and closed within the package so that later asyncio tests get a clean event loop.
Screenshots go to test-artifacts/screenshots/ (or $STEPWATCH_ARTIFACTS/screenshots/).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.helpers import CHROMIUM, CHROMIUM_ARGS
from tests.helpers import serve

playwright_sync = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[2]
ACCOUNT_LINE = re.compile(r"^\s+(admin|director|trainer|manager)\s+(\S+)\s+password (\S+)$", re.MULTILINE)


@pytest.fixture(scope="package")
def artifacts() -> Path:
    path = Path(os.environ.get("STEPWATCH_ARTIFACTS", REPO / "test-artifacts")) / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="package")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, tuple[str, str]]]]:
    """(the server, role -> (user name, password)) of a fresh `stepwatch demo`."""
    tmp = tmp_path_factory.mktemp("dashboards-demo")
    env = {"STEPWATCH_DATA_DIR": str(tmp / "data"), "STEPWATCH_ANALYSIS_INTERVAL_S": "0",
           "STEPWATCH_SECRET_KEY": "browser-test-secret-0123456789"}
    proc = subprocess.run([sys.executable, "-m", "stepwatch", "demo", "--no-serve", "--managers", "24"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    accounts = {role: (name, password) for role, name, password in ACCOUNT_LINE.findall(proc.stdout)}
    assert set(accounts) == {"admin", "director", "trainer", "manager"}, proc.stdout
    with serve(env, tmp) as server:
        yield server, accounts


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class Visit:
    """A signed-in browser page that records console errors and failed requests."""

    def __init__(self, browser: Any, base: str, artifacts: Path):
        self.context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
        self.page = self.context.new_page()
        self.base, self.artifacts = base.rstrip("/"), artifacts
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("response", lambda r: self.errors.append(f"HTTP {r.status} {r.url}")
                     if r.status >= 400 and r.request.resource_type != "document" else None)

    def login(self, name: str, password: str) -> None:
        self.page.goto(self.base + "/login")
        self.page.get_by_label("User name").fill(name)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state()
        assert "/login" not in self.page.url, self.page.content()[:2000]
        # the language is the account's: a test that read the pages in Russian may have left it so
        if self.page.evaluate("document.documentElement.lang") != "en":
            with self.page.expect_navigation():
                self.page.select_option("#language-picker", "en")
            self.page.wait_for_function("document.documentElement.lang === 'en'")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.artifacts / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Any, demo: Any, artifacts: Path) -> Iterator[Any]:
    server, _accounts = demo
    opened: list[Visit] = []

    def open_as(role: str) -> Visit:
        v = Visit(browser, server.url, artifacts)
        name, password = _accounts[role]
        v.login(name, password)
        opened.append(v)
        return v

    yield open_as
    for v in opened:
        v.close()
