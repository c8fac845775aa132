"""The application factory: the one place that wires storage, middleware and the parts' routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

import coaching
import collector
import dashboards
from coaching import outbox
from dashboards.auth import is_https, same_secret
from kernel import app_keys, migrations
from kernel.errors import StepwatchError
from kernel.logs import REQUEST_ID
from kernel.settings import Settings
from kernel.storage import StorageUnavailable, Store
from stepwatch import privacy_web

log = logging.getLogger("stepwatch.app")

# An admin runner executes a CLI command (argv) inside the server: (exit code, stdout, stderr).
AdminRunner = Callable[[list[str], Store], tuple[int, str, str]]
ADMIN_TOKEN = web.AppKey("admin_token", str)
ADMIN_RUNNER = web.AppKey("admin_runner", object)
WEBHOOK_INTERVAL_S = 10.0
DIGEST_CHECK_S = 600.0  # how often serve checks whether the week's digests are due (they go once a week)


def create_app(
    settings: Settings, admin_runner: AdminRunner | None = None, store: Store | None = None
) -> web.Application:
    """The aiohttp application; `store` may be given by tests (e.g. one that fails on purpose)."""
    app = web.Application(middlewares=[request_context, json_errors, readable_form],
                          client_max_size=settings.max_body_bytes + 1)
    app.on_response_prepare.append(security_headers)
    app[app_keys.SETTINGS] = settings
    app[app_keys.STORE] = store if store is not None else Store(settings)
    app[ADMIN_TOKEN] = secrets.token_urlsafe(32)
    app.cleanup_ctx.append(storage_ctx)
    collector.setup(app)
    dashboards.setup(app)
    privacy_web.setup(app)  # the manager's own export: spans every part, so the application wires it
    # Several collectors behind a load balancer share one ClickHouse: exactly one of them is deployed with
    # STEPWATCH_ANALYSIS_INTERVAL_S > 0 and runs the schedule, the others set it to 0 (docs/deploy.md).
    if settings.analysis_interval_s > 0:
        app.cleanup_ctx.append(analysis_schedule)
    if outbox.configured(settings):
        app.cleanup_ctx.append(webhook_delivery)
        if settings.digest_day != "off":
            app.cleanup_ctx.append(digest_schedule)
    if admin_runner is not None:
        app[ADMIN_RUNNER] = admin_runner
        app.router.add_post("/v1/admin/cli", run_cli_command)
    return app


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    store, settings = app[app_keys.STORE], app[app_keys.SETTINGS]
    try:
        applied = await store.run(migrations.apply_pending, settings.retention_days)
        if applied:
            log.info("migrations applied", extra={"versions": [m.version for m in applied]})
    except StorageUnavailable as exc:
        # The collector still starts: events go to the spool and the drainer migrates later.
        log.warning("storage unavailable at start", extra={"error": str(exc)})
    yield
    store.close()


@contextlib.asynccontextmanager
async def in_background(work: Awaitable[None]) -> AsyncIterator[None]:
    """Run `work` (a loop of the server's own) while the block runs; cancel it and wait for it after."""
    task = asyncio.ensure_future(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def analysis_schedule(app: web.Application) -> AsyncIterator[None]:
    """Run the analysis every STEPWATCH_ANALYSIS_INTERVAL_S, off the event loop."""
    from stepwatch import analysis_run

    settings, store = app[app_keys.SETTINGS], app[app_keys.STORE]

    async def loop() -> None:
        await asyncio.sleep(min(5.0, settings.analysis_interval_s))  # let ingest settle first
        while True:
            started = time.perf_counter()
            try:
                runs = await store.run(lambda client: analysis_run.analyze(client, settings))
                log.info("analysis ran", extra={"sites": len(runs), "seconds": round(time.perf_counter() - started, 2),
                                                "drawdowns": sum(len(r.result.drawdowns) for r in runs)})
                # Coaching whose window after it is over gets its verdict once the analysis has the data.
                evaluated = await store.run(coaching.evaluate_due, settings)
                if evaluated:
                    log.info("coaching evaluated", extra={"evaluations": len(evaluated)})
            except Exception:
                log.exception("analysis failed")
            await asyncio.sleep(settings.analysis_interval_s)

    async with in_background(loop()):
        yield


async def webhook_delivery(app: web.Application) -> AsyncIterator[None]:
    """Deliver the outbox (webhook and e-mail) every WEBHOOK_INTERVAL_S (retries back off)."""
    settings, store = app[app_keys.SETTINGS], app[app_keys.STORE]

    async def loop() -> None:
        while True:
            try:
                await store.run(coaching.deliver_due, settings)
            except Exception:
                log.exception("webhook delivery failed")
            await asyncio.sleep(WEBHOOK_INTERVAL_S)

    async with in_background(loop()):
        yield


async def digest_schedule(app: web.Application) -> AsyncIterator[None]:
    """Queue the week's digests once they are due (STEPWATCH_DIGEST_DAY and _HOUR); the outbox keeps each
    to once a week, so checking every DIGEST_CHECK_S queues nothing twice."""
    from stepwatch import digests

    settings, store = app[app_keys.SETTINGS], app[app_keys.STORE]

    async def loop() -> None:
        await asyncio.sleep(min(60.0, DIGEST_CHECK_S))  # after the first analysis of a restart
        while True:
            try:
                if digests.due(settings, datetime.now(UTC)):
                    report = await store.run(lambda client: digests.send(client, settings))
                    if report.queued:
                        log.info("digests queued", extra={"messages": report.queued, "digests": report.composed})
            except Exception:
                log.exception("digests failed")
            await asyncio.sleep(DIGEST_CHECK_S)

    async with in_background(loop()):
        yield


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
    token = REQUEST_ID.set(request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request", extra={"method": request.method, "path": request.path,
                                        "ms": round((time.perf_counter() - started) * 1000, 2)})
        REQUEST_ID.reset(token)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors and HTTP errors become JSON answers; anything else is logged, never leaked."""
    try:
        return await handler(request)
    except StepwatchError as exc:
        body = {"error": str(exc), **({"field": exc.field} if exc.field else {}),
                **({"code": exc.code} if exc.code else {})}
        return web.json_response(body, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status, headers=_keep_headers(exc))
    except StorageUnavailable:
        return web.json_response({"error": "storage unavailable"}, status=503, headers={"Retry-After": "5"})
    except Exception:
        log.exception("unhandled error")
        return web.json_response({"error": "internal error", "request_id": REQUEST_ID.get()}, status=500)


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@web.middleware
async def readable_form(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A form body that cannot be read (multipart without a boundary, a broken part, an unknown charset) is
    400 here, once for every form handler (the dashboards' actions, /login, /logout): request.post() would
    raise inside each of them. The form read here is kept by aiohttp and handed to the handler's own post()."""
    if request.method == "POST" and request.content_type in FORM_TYPES and not request.path.startswith("/v1/"):
        try:
            await request.post()
        except web.HTTPException:
            raise  # 413: the body is over client_max_size
        except Exception as exc:  # noqa: BLE001 - whatever the parser chokes on, the client sent it
            log.info("unreadable form body", extra={"path": request.path, "error": str(exc)[:200]})
            return web.json_response({"error": f"the form body cannot be read ({request.content_type}): "
                                               "send a boundary with multipart/form-data, or send JSON",
                                      "field": "Content-Type"}, status=400)
    return await handler(request)


# Every answer: no MIME sniffing, no framing, no referrer to other sites. Pages set their own stricter CSP
# (dashboards.web.SECURITY_HEADERS); anything else (JSON, CSV, the collector's answers) may run nothing.
BASE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
NON_HTML_CSP = "default-src 'none'; frame-ancestors 'none'"


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers on every response, whichever handler or middleware made it (an error, a redirect,
    a static file); HSTS only over https (directly, or X-Forwarded-Proto from a trusted proxy)."""
    headers = response.headers
    for name, value in BASE_HEADERS.items():
        headers.setdefault(name, value)
    if not (response.content_type or "").startswith("text/html"):
        headers.setdefault("Content-Security-Policy", NON_HTML_CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    hsts = request.app[app_keys.SETTINGS].hsts_seconds
    if hsts > 0 and is_https(request):
        headers["Strict-Transport-Security"] = f"max-age={hsts}; includeSubDomains"


def _keep_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After", "Location")}


async def run_cli_command(request: web.Request) -> web.Response:
    """Run a CLI command inside the server, for `stepwatch ...` while serve holds the data dir."""
    if request.remote not in ("127.0.0.1", "::1"):
        return web.json_response({"error": "admin commands only from this machine"}, status=403)
    supplied = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not same_secret(request.app[ADMIN_TOKEN], supplied):
        return web.json_response({"error": "bad admin token"}, status=401)
    try:
        body: Any = await request.json()
    except ValueError:
        return web.json_response({"error": "the body is not valid JSON", "field": "argv"}, status=400)
    argv = body.get("argv") if isinstance(body, dict) else None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return web.json_response({"error": "argv must be a list of strings", "field": "argv"}, status=400)
    runner: AdminRunner = request.app[ADMIN_RUNNER]  # type: ignore[assignment]
    store = request.app[app_keys.STORE]
    code, output, errors = await store.run(lambda _client: runner(argv, store))
    return web.json_response({"exit_code": code, "output": output, "errors": errors})
