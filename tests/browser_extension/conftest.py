"""Browser tests of the extension: Debian's Chromium with the built extension loaded, a fake CRM whose
pages have NO tracker snippet, and the real collector (`stepwatch serve`) behind the recording proxy.

    Chromium ──pages──▶ PlainCrm (tests/fixtures/crm/clients/*.html, snippet lines removed)
       │   the extension (tracker_js/extension, built by its build.js into a temporary folder, with
       │   the CRM's origin and stepwatch's as host permissions) injects tracker.js into those pages
       └─tracker: /v1/*──▶ CollectorProxy ──▶ stepwatch serve  ◀──sign-in, identity token── the extension

The CRM serves the same pages at http://127.0.0.1:P (configured) and http://localhost:P (another
origin). The extension is configured per test through its options page (a pasted setup link); the
policy path (managed storage) has its own test, which writes a policy file when it can.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.browser.helpers import CHROMIUM, CHROMIUM_ARGS, Collector, SiteKeys
from tests.browser.servers import CRM_DIR, TRACKER_JS, CollectorProxy, Loop

playwright_sync = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "tracker_js" / "extension"
PASSWORD = "extension tests password"
SIGNIN_MANAGER = "ext-signed-in"  # the manager id of the `mia` account
VISIT_COLUMNS = (
    "visit_id, seq, final, manager, session_id, customer, process, step, path, started_at,"
    " active_ms, idle_ms, hidden_ms"
)


def build_extension(out: Path, *origins: str) -> Path:
    """The extension as `npm run build` makes it, with these origins as host permissions; unpacked in `out`."""
    if shutil.which("node") is None:
        pytest.skip("no node to build the extension")
    args = ["node", str(EXTENSION / "build.js"), "--out", str(out / "extension.zip"), "--unpacked", str(out / "ext")]
    for origin in origins:
        args += ["--origin", origin]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    return out / "ext"


# ---------------------------------------------------------------------------------------------
# The fake CRM without a snippet


@dataclass
class CrmState:
    manager: str | None = None  # shown in <span id="crm-user"> (identity by element)
    variable: str | None = None  # set as window.crm.user.id by the CRM's own script (identity by value)


class PlainCrm:
    """tests/fixtures/crm's multi-page CRM with every <script> line taken out: nothing of stepwatch."""

    def __init__(self) -> None:
        self.state = CrmState()
        self.url = ""

    @property
    def other_origin(self) -> str:
        return self.url.replace("127.0.0.1", "localhost")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/clients/{customer}/{step}", self._page)
        app.router.add_static("/static/", CRM_DIR / "static")
        app.router.add_get("/reports/{report}", self._report)  # a page no step of sales.toml matches
        app.router.add_get("/", self._index)
        return app

    async def _page(self, request: web.Request) -> web.Response:
        step = request.match_info["step"]
        if not re.fullmatch(r"[a-z]+", step) or not (CRM_DIR / "clients" / f"{step}.html").exists():
            raise web.HTTPNotFound()
        html = "\n".join(line for line in (CRM_DIR / "clients" / f"{step}.html").read_text().splitlines()
                         if "<script" not in line)
        user = ""
        if self.state.manager is not None:
            user += f'<p class="crm-user">Signed in as <span id="crm-user">{self.state.manager}</span></p>'
        if self.state.variable is not None:
            user += f"<script>window.crm = {{user: {{id: {json.dumps(self.state.variable)}}}}}</script>"
        html = html.replace("<body>", "<body>\n" + user, 1)
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def _report(self, request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>Report · Fake CRM</title><body><h1>Sales report</h1>",
                            content_type="text/html")

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>Fake CRM</title><p>Clients</p>", content_type="text/html")


# ---------------------------------------------------------------------------------------------
# The collector and stepwatch


def _cli(*argv: str, env: dict[str, str], stdin: str | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "stepwatch", *argv], env={**os.environ, **env}, input=stdin,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"stepwatch {' '.join(argv)} failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


@dataclass
class Stepwatch:
    """The running server (dashboards and collector) and the collector as the tests see it."""

    url: str  # http://127.0.0.1:N, for signing in
    collector: Collector  # its proxy's url is where the tracker sends
    sql: Callable[[str], list[dict[str, Any]]]


@pytest.fixture(scope="package")
def servers() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="package")
def crm(servers: Loop) -> PlainCrm:
    server = PlainCrm()
    server.url = servers.serve(server.app())
    return server


@pytest.fixture(scope="package")
def stepwatch(servers: Loop, crm: PlainCrm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stepwatch]:
    assert TRACKER_JS.exists(), "tracker_js/dist/tracker.js is missing: run `npm run build` in tracker_js/"
    data_dir = tmp_path_factory.mktemp("collector")
    env = {"STEPWATCH_DATA_DIR": str(data_dir), "STEPWATCH_RATE_LIMIT_ADDRESS": "0"}
    keys = {}
    for name, signed in (("crm", False), ("signed", True)):
        flags = ["--require-signed-identity"] if signed else []
        shown = json.loads(_cli("sites", "add", name, "--origin", crm.url, *flags, "--json", env=env))
        keys[name] = SiteKeys(shown["name"], shown["key"], shown["secret"])
        _cli("process", "load", str(CRM_DIR / "sales.toml"), "--site", name, env=env)
    _cli("users", "add", "mia", "--role", "manager", "--manager-id", SIGNIN_MANAGER, "--password-stdin",
         env=env, stdin=PASSWORD + "\n")
    _cli("users", "add", "dan", "--role", "director", "--password-stdin", env=env, stdin=PASSWORD + "\n")
    from tests.helpers import serve

    with ExitStack() as stack:
        server = stack.enter_context(serve(env, data_dir))
        upstream = server.url.rstrip("/")

        def sql(query: str) -> list[dict[str, Any]]:
            return list(json.loads(_cli("sql", query, "--format", "json", env=env)))

        def read(manager: str) -> list[dict[str, Any]]:
            return sql(f"SELECT {VISIT_COLUMNS} FROM visits WHERE manager = '{manager}'")

        proxy = CollectorProxy(upstream)
        proxy.url = servers.serve(proxy.app())
        collector = Collector(proxy, keys, read)
        collector.cli = lambda *argv: _cli(*argv, env=env)
        yield Stepwatch(upstream, collector, sql)


# ---------------------------------------------------------------------------------------------
# The browser with the extension


class Browser:
    """A Chromium profile with the extension loaded; `configure` pastes a setup link in its options page."""

    def __init__(self, context: Any, extension_id: str):
        self.context = context
        self.id = extension_id

    @property
    def worker(self) -> Any:
        return next(w for w in self.context.service_workers if self.id in w.url)

    def extension_page(self, name: str) -> Any:
        page = self.context.new_page()
        page.goto(f"chrome-extension://{self.id}/{name}")
        return page

    def state(self) -> dict[str, Any]:
        """The service worker's resolved configuration: {source, config, problems, allowed}."""
        return dict(self.worker.evaluate("ready"))

    def configure(self, config: dict[str, Any], base: str = "https://stepwatch.example") -> dict[str, Any]:
        """Paste the setup link of `config` in the options page, as a manager would; the resulting state."""
        options = self.extension_page("options.html")
        options.fill("#link", setup_link(base, config))
        options.click("#save")
        deadline = time.monotonic() + 10
        while True:
            state = self.state()
            if state.get("config") and state["config"]["site"] == config["site"] and \
                    state["config"]["identity"] == config["identity"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        options.close()
        return state


def setup_link(base: str, config: dict[str, Any]) -> str:
    packed = base64.urlsafe_b64encode(json.dumps(config).encode()).decode().rstrip("=")
    return f"{base}/extension/setup#{packed}"


def launch(playwright: Any, extension: Path, user_data_dir: Path, extra_args: tuple[str, ...] = (),
           env: dict[str, str] | None = None) -> Browser:
    context = playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=CHROMIUM, headless=False, env={**os.environ, **(env or {})},
        args=["--headless=new", *CHROMIUM_ARGS, f"--disable-extensions-except={extension}",
              f"--load-extension={extension}", *extra_args])
    worker = context.service_workers[0] if context.service_workers else context.wait_for_event("serviceworker")
    return Browser(context, worker.url.split("/")[2])


@pytest.fixture(scope="package")
def playwright() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_sync.sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def extension_dir(crm: PlainCrm, stepwatch: Stepwatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_extension(tmp_path_factory.mktemp("extension"), crm.url, stepwatch.url)


@pytest.fixture(scope="package")
def browser(playwright: Any, extension_dir: Path) -> Iterator[Browser]:
    profile = Path(tempfile.mkdtemp(prefix="stepwatch-extension-profile-"))
    browser = launch(playwright, extension_dir, profile)
    yield browser
    browser.context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def manager(request: pytest.FixtureRequest) -> str:
    """A manager id of this test's own, so tests sharing the collector never see each other's rows."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50]
    return f"x-{name}-{os.urandom(3).hex()}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Any]:
    page = browser.context.new_page()
    yield page
    page.close()
