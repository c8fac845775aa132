"""Browser tests of the tracker: a fake CRM, a real Chromium, and the collector behind a recording proxy.

The collector is `stepwatch serve` in a subprocess (its own data directory), with two sites for
the fake CRM's origin: `crm` and `signed` (signed identity required), both running `sales.toml`.
What ClickHouse stored is read back with `stepwatch sql`. STEPWATCH_TEST_COLLECTOR=stub runs
the same tests against servers.StubCollector instead (for work on the tracker alone).

Time: tests script long stays with Playwright's fake clock (`page.clock`), which drives
performance.now(), timers and Date in the page. See `helpers.Clock`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.browser.helpers import CHROMIUM, CHROMIUM_ARGS, Collector, SiteKeys, page_errors
from tests.browser.servers import CRM_DIR, TRACKER_JS, CollectorProxy, CrmServer, Loop, StubCollector

playwright_sync = pytest.importorskip("playwright.sync_api")

VISIT_COLUMNS = (
    "visit_id, seq, final, manager, session_id, customer, process, step, path, started_at,"
    " active_ms, idle_ms, hidden_ms"
)


# ---------------------------------------------------------------------------------------------
# The collector


def _cli(*argv: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "stepwatch", *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stepwatch {' '.join(argv)} failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def _missing_cli_commands(env: dict[str, str]) -> list[str]:
    """The `stepwatch` commands these tests need that the installed CLI does not have (yet)."""
    missing = []
    for command in (["serve"], ["sites", "add"], ["process", "load"], ["sql"]):
        proc = subprocess.run(
            [sys.executable, "-m", "stepwatch", *command, "--help"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            missing.append(" ".join(command))
    return missing


@pytest.fixture(scope="package")
def servers() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="package")
def crm(servers: Loop) -> CrmServer:
    server = CrmServer()
    server.url = servers.serve(server.app())
    return server


@pytest.fixture(scope="package")
def collector(servers: Loop, crm: CrmServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    assert TRACKER_JS.exists(), "tracker_js/dist/tracker.js is missing: run `npm run build` in tracker_js/"
    with ExitStack() as stack:
        if os.environ.get("STEPWATCH_TEST_COLLECTOR") == "stub":
            stub = StubCollector()
            stub.url = servers.serve(stub.app())
            sites = {
                name: SiteKeys(**{k: v for k, v in stub.add_site(name, crm.url, signed).items()})
                for name, signed in (("crm", False), ("signed", True))
            }

            def read(manager: str) -> list[dict[str, Any]]:
                return [dict(v) for v in stub.visits() if v.get("manager") == manager]

            upstream = stub.url
            run_cli = None
        else:
            data_dir = tmp_path_factory.mktemp("collector")
            env = {"STEPWATCH_DATA_DIR": str(data_dir), "STEPWATCH_RATE_LIMIT_ADDRESS": "0"}
            missing = _missing_cli_commands(env)
            if missing:
                pytest.skip(f"the stepwatch CLI has no {', '.join(missing)} command yet")
            sites = {}
            for name, signed in (("crm", False), ("signed", True)):
                flags = ["--require-signed-identity"] if signed else []
                shown = json.loads(_cli("sites", "add", name, "--origin", crm.url, *flags, "--json", env=env))
                sites[name] = SiteKeys(shown["name"], shown["key"], shown["secret"])
                _cli("process", "load", str(CRM_DIR / "sales.toml"), "--site", name, env=env)
            from tests.helpers import serve

            server = stack.enter_context(serve(env, data_dir))
            upstream = server.url.rstrip("/")

            def read(manager: str) -> list[dict[str, Any]]:
                query = f"SELECT {VISIT_COLUMNS} FROM visits WHERE manager = '{manager}'"
                return list(json.loads(_cli("sql", query, "--format", "json", env=env)))

            def run_cli(*argv: str) -> str:
                return _cli(*argv, env=env)

        proxy = CollectorProxy(upstream)
        proxy.url = servers.serve(proxy.app())
        found = Collector(proxy, sites, read)
        found.cli = run_cli  # the stepwatch command against this collector's data (None on the stub)
        yield found


# ---------------------------------------------------------------------------------------------
# The browser


# Package scope, not session: Playwright's sync API keeps an event loop running while it is open,
# and the asyncio tests that run after this folder need it closed.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_sync.sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Any) -> Iterator[Any]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    yield context
    context.close()


@pytest.fixture
def page(context: Any) -> Any:
    page = context.new_page()
    page.on("pageerror", lambda error: page_errors(page).append(str(error)))
    return page


@pytest.fixture
def manager(request: pytest.FixtureRequest) -> str:
    """A manager id of this test's own, so tests sharing the collector never see each other's rows."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    return f"m-{name}-{os.urandom(3).hex()}"


@pytest.fixture
def crm_as(crm: CrmServer, collector: Collector, manager: str) -> Callable[..., CrmServer]:
    """Point the fake CRM at a site, as a manager (signed with the site's secret if `signed`)."""

    def configure(
        site: str = "crm", manager_id: str | None = manager, token: str | None = None, extra: str = ""
    ) -> CrmServer:
        crm.state.site = collector.sites[site].key
        crm.state.tracker = collector.tracker_url
        crm.state.manager = manager_id
        crm.state.token = token
        crm.state.snippet_extra = extra
        return crm

    configure()
    return configure
