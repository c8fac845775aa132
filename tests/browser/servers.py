"""The servers around the browser in the tracker tests, each a small aiohttp app on a loopback port.

    browser ──pages──▶ CrmServer (tests/fixtures/crm, templated)
       │
       └─tracker.js, /v1/*──▶ CollectorProxy ──▶ collector (`stepwatch serve`, or StubCollector)
                               records every event batch (beacons too, which Playwright does not
                               report) and can answer with a failure instead of forwarding

All of them run on one event loop in a background thread (`Loop`), so the tests themselves use
Playwright's sync API.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import tomllib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import ClientSession, web

CRM_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "crm"
TRACKER_JS = Path(__file__).resolve().parent.parent.parent / "tracker_js" / "dist" / "tracker.js"

T = TypeVar("T")


class Loop:
    """An asyncio loop in a daemon thread, for servers that live as long as the test session."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-servers", daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self, app: web.Application) -> str:
        """Start `app` on a free loopback port; return its base URL."""

        async def start() -> str:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.runners.append(runner)
            port = runner.addresses[0][1]
            return f"http://127.0.0.1:{port}"

        return self.run(start())

    def close(self) -> None:
        async def stop() -> None:
            for runner in reversed(self.runners):
                await runner.cleanup()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# ---------------------------------------------------------------------------------------------
# The fake CRM


@dataclass
class CrmState:
    """What the next page load of the fake CRM puts in the page; tests change it."""

    site: str = ""
    tracker: str = ""  # URL of tracker.js; its origin is where the tracker sends
    manager: str | None = "manager-1"
    token: str | None = None
    snippet_extra: str = ""  # more JavaScript for /snippet.js, e.g. stepwatch('session', ...)


class CrmServer:
    """Serves tests/fixtures/crm; see its README.md for the URLs."""

    ROUTES = [
        ("/clients/{customer}/{step}", lambda m: f"clients/{m['step']}.html", False),
        ("/app/{tail:.*}", lambda m: "spa/index.html", False),
        ("/hash/", lambda m: "hash/index.html", False),
        ("/csp/clients/{customer}/offer", lambda m: "csp.html", True),
        ("/throws/clients/{customer}/offer", lambda m: "throws.html", False),
        ("/form/clients/{customer}/identification", lambda m: "form.html", False),
    ]

    def __init__(self) -> None:
        self.state = CrmState()
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        for pattern, file_for, strict_csp in self.ROUTES:
            app.router.add_get(pattern, self._page(file_for, strict_csp))
        app.router.add_get("/snippet.js", self._snippet)
        for folder in ("static", "spa", "hash"):
            app.router.add_static(f"/{folder}/", CRM_DIR / folder)
        app.router.add_get("/", self._index)
        return app

    def _page(self, file_for: Callable[[Any], str], strict_csp: bool) -> Any:
        async def handler(request: web.Request) -> web.Response:
            html = (CRM_DIR / file_for(request.match_info)).read_text()
            html = html.replace("{{tracker}}", self.state.tracker).replace("{{site}}", self.state.site)
            headers = {"Cache-Control": "no-cache"}  # (no-store would keep pages out of the back/forward cache)
            if strict_csp:
                collector = self.state.tracker.rsplit("/", 1)[0]
                headers["Content-Security-Policy"] = (
                    f"default-src 'none'; script-src 'self' {collector}; connect-src {collector}; style-src 'self'"
                )
            return web.Response(text=html, content_type="text/html", headers=headers)

        return handler

    async def _snippet(self, request: web.Request) -> web.Response:
        lines = [
            "window.stepwatch = window.stepwatch || function () { (stepwatch.q = stepwatch.q || []).push(arguments) };"
        ]
        if self.state.manager is not None:
            args = [self.state.manager] + ([self.state.token] if self.state.token else [])
            lines.append(f"stepwatch('identify', {', '.join(json.dumps(a) for a in args)});")
        lines.append(self.state.snippet_extra)
        return web.Response(
            text="\n".join(lines), content_type="application/javascript", headers={"Cache-Control": "no-store"}
        )

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>Fake CRM</title><p>Clients</p>", content_type="text/html")


def sign(secret: str, manager: str, lifetime_s: int = 3600) -> str:
    """An identity token as the CRM's backend makes it (docs/tracker.md, collector/identity.py)."""
    return sign_until(secret, manager, int(time.time()) + lifetime_s)


def sign_until(secret: str, manager: str, expires: int) -> str:
    signature = hmac.new(secret.encode(), f"{manager}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{signature}"


# ---------------------------------------------------------------------------------------------
# Between the browser and the collector


@dataclass
class Batch:
    """One POST /v1/events as the collector proxy saw it."""

    at: float
    body: str
    status: int

    @property
    def events(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads(self.body).get("events", []))
        except ValueError:
            return []


@dataclass
class Fault:
    status: int  # 0: drop the connection, as if the network failed
    headers: dict[str, str] = field(default_factory=dict)


class CollectorProxy:
    """Forwards tracker traffic to the collector, keeping a copy of every event batch.

    `fail(n, status)` answers the next n batches with `status` instead of forwarding them.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.batches: list[Batch] = []
        self.requests: list[str] = []  # "METHOD path" of everything the tracker asked for
        self.reports: list[str] = []  # bodies of step discovery's reports (POST /v1/discovery)
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self.url = ""

    def fail(self, times: int, status: int = 503, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self.faults.extend(Fault(status, headers or {}) for _ in range(times))

    def app(self) -> web.Application:
        app = web.Application()
        app.cleanup_ctx.append(self._session)
        app.router.add_route("*", "/{path:.*}", self._forward)
        return app

    async def _session(self, app: web.Application) -> Any:
        self._client = ClientSession(auto_decompress=False)
        yield
        await self._client.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self.requests.append(f"{request.method} {request.path_qs}")
            fault = self.faults.pop(0) if request.method == "POST" and self.faults else None
        if fault is not None:
            self._record(body, fault.status)
            if fault.status == 0:
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("fault injected")
            origin = request.headers.get("Origin", "*")
            return web.json_response(
                {"error": "fault injected"},
                status=fault.status,
                headers={"Access-Control-Allow-Origin": origin, **fault.headers},
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._client.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        ) as upstream:
            payload = await upstream.read()
            if request.method == "POST" and request.path.endswith("/v1/events"):  # the extension's base too
                self._record(body, upstream.status)
            if request.method == "POST" and request.path == "/v1/discovery":
                with self._lock:
                    self.reports.append(body.decode(errors="replace"))
            passed = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server")
            }
            return web.Response(body=payload, status=upstream.status, headers=passed)

    def _record(self, body: bytes, status: int) -> None:
        with self._lock:
            self.batches.append(Batch(time.time(), body.decode(errors="replace"), status))

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [event for batch in self.batches for event in batch.events]

    def bodies(self) -> list[str]:
        with self._lock:
            return [batch.body for batch in self.batches]


# ---------------------------------------------------------------------------------------------
# A stand-in collector


class StubCollector:
    """The collector's HTTP contract in a few lines, for developing the tracker without it.

    Keeps one row per visit_id + seq and per event_id like the real one; `visits()` returns the
    latest report of every visit. Set STEPWATCH_TEST_COLLECTOR=stub to run the browser tests on it.
    """

    def __init__(self, process_file: Path = CRM_DIR / "sales.toml"):
        self.process = tomllib.loads(process_file.read_text())
        self.sites: dict[str, dict[str, Any]] = {}  # key -> {name, secret, origin, require_identity}
        self.visit_rows: dict[tuple[str, int], dict[str, Any]] = {}
        self.session_rows: dict[str, dict[str, Any]] = {}
        self.url = ""

    def add_site(self, name: str, origin: str, require_identity: bool = False) -> dict[str, str]:
        key = hashlib.sha256(name.encode()).hexdigest()[:16]
        secret = hashlib.sha256(b"secret" + name.encode()).hexdigest()
        self.sites[key] = {"name": name, "secret": secret, "origin": origin, "require_identity": require_identity}
        return {"name": name, "key": key, "secret": secret}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/tracker.js", self._tracker)
        app.router.add_get("/v1/config/{key}", self._config)
        app.router.add_post("/v1/events", self._events)
        app.router.add_route("OPTIONS", "/v1/events", self._preflight)
        return app

    def _cors(self, request: web.Request) -> dict[str, str]:
        return {"Access-Control-Allow-Origin": request.headers.get("Origin", "*"), "Vary": "Origin"}

    async def _tracker(self, request: web.Request) -> web.Response:
        return web.Response(body=TRACKER_JS.read_bytes(), content_type="application/javascript")

    async def _config(self, request: web.Request) -> web.Response:
        site = self.sites.get(request.match_info["key"])
        if site is None:
            return web.json_response({"error": "unknown site"}, status=404, headers=self._cors(request))
        salt = hashlib.sha256(b"salt" + site["name"].encode()).hexdigest()[:32]
        config = {
            "site": request.match_info["key"],
            "process": self.process["process"],
            "version": 1,
            "require_identity": site["require_identity"],
            "salt": salt,
            "idle_ms": self.process.get("tracker", {}).get("idle_ms", 30000),
            "checkpoint_ms": self.process.get("tracker", {}).get("checkpoint_ms", 15000),
            "session_timeout_ms": self.process.get("tracker", {}).get("session_timeout_ms", 1800000),
            "steps": self.process["steps"],
            "attributes": self.process.get("attributes", {}),
        }
        return web.json_response(config, headers=self._cors(request))

    async def _preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={**self._cors(request), "Access-Control-Allow-Methods": "POST"})

    async def _events(self, request: web.Request) -> web.Response:
        cors = self._cors(request)
        try:
            batch = json.loads(await request.text())
        except ValueError:
            return web.json_response({"error": "bad json"}, status=400, headers=cors)
        site = self.sites.get(batch.get("site"))
        if site is None:
            return web.json_response({"error": "unknown site"}, status=401, headers=cors)
        if site["require_identity"]:
            managers = {e.get("manager") for e in batch["events"]}
            token = batch.get("identity") or ""
            expires, _, _sig = token.partition(".")
            good = expires.isdigit() and any(
                hmac.compare_digest(sign_until(site["secret"], m, int(expires)), token)
                for m in managers
                if isinstance(m, str)
            )
            if not good:
                return web.json_response({"error": "identity rejected"}, status=401, headers=cors)
        rejected = []
        for index, event in enumerate(batch["events"]):
            if not isinstance(event.get("manager"), str) or not event["manager"]:
                rejected.append({"index": index, "reason": "manager: missing"})
            elif event.get("type") == "visit":
                self.visit_rows.setdefault((event["visit_id"], event["seq"]), {**event, "site": site["name"]})
            elif event.get("type") == "session":
                self.session_rows.setdefault(event["event_id"], {**event, "site": site["name"]})
            else:
                rejected.append({"index": index, "reason": "type: unknown"})
        accepted = len(batch["events"]) - len(rejected)
        return web.json_response({"accepted": accepted, "rejected": rejected}, headers=cors)

    def visits(self) -> list[dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        for (visit_id, _seq), row in sorted(self.visit_rows.items(), key=lambda item: item[0][1]):
            latest[visit_id] = row
        return list(latest.values())

    def sessions(self) -> list[dict[str, Any]]:
        return list(self.session_rows.values())
