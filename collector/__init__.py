"""The collector: validates, authenticates and stores tracker events in ClickHouse, exactly once.

`setup(app)` adds its routes and its resources (writer, spool, site directory) to the
application made by stepwatch.app.create_app, which has already put the settings and the store on it
(kernel/app_keys.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from aiohttp import web

from collector import discovery, keys, views
from collector.directory import SiteDirectory
from collector.events import Validator
from collector.ratelimit import RateLimiter
from collector.spool import Spool
from collector.writer import EventWriter
from kernel import app_keys

__all__ = ["setup", "EXTENSION_BASE"]

EXTENSION_BASE = "/v1/extension"  # the browser extension's tracker's data-api, below the collector's URL


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/events", views.post_events)
    app.router.add_route("OPTIONS", "/v1/events", views.preflight)
    app.router.add_post("/v1/discovery", discovery.post_discovery)
    app.router.add_route("OPTIONS", "/v1/discovery", views.preflight)
    app.router.add_get("/v1/schema", views.schema)
    app.router.add_get("/v1/config/{site_key}", views.tracker_config)
    # the tracker the browser extension runs has this as its base (data-api): the same events, its
    # own config (without the discovery module, which the page would load from here)
    app.router.add_post(EXTENSION_BASE + "/v1/events", views.post_events)
    app.router.add_route("OPTIONS", EXTENSION_BASE + "/v1/events", views.preflight)
    app.router.add_get(EXTENSION_BASE + "/v1/config/{site_key}", views.extension_tracker_config)
    app.router.add_get("/healthz", views.healthz)
    app.router.add_get("/readyz", views.readyz)
    app.router.add_get("/metrics", views.prometheus)
    try:
        from tracker_js import DISCOVERY_PATH, TRACKER_PATH

        app.router.add_get("/tracker.js", views.TrackerScript(TRACKER_PATH.read_bytes()).serve)
        # A module the tracker imports only while the site's discovery is on: any origin may load it
        # (it holds no site's data), and a cross-origin module needs CORS.
        app.router.add_get("/discovery.js", views.TrackerScript(DISCOVERY_PATH.read_bytes(), cors=True).serve)
    except (ImportError, OSError):
        pass  # not built yet: the route is missing rather than broken
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(discovery.resources)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings, store = app[app_keys.SETTINGS], app[app_keys.STORE]
    spool = Spool(settings.spool_path, settings.spool_max_bytes)
    writer = EventWriter(store, spool, ack_mode=settings.ack_mode, group_rows=settings.group_commit_rows,
                         group_ms=settings.group_commit_ms, flush_ms=settings.flush_ms,
                         retry_s=settings.spool_retry_s)
    sites = SiteDirectory(store, settings.spool_path / "sites-snapshot.json")
    app[keys.WRITER] = writer
    app[keys.VALIDATOR] = Validator(settings)
    app[keys.SITES] = sites
    app[keys.LIMITS] = keys.Limits(RateLimiter(settings.rate_limit_site), RateLimiter(settings.rate_limit_address))
    await sites.refresh()
    await writer.ship()  # replay what a previous run acknowledged but had not stored
    writer.start()
    refresher = asyncio.create_task(sites.run())
    thresholds = _quiet_gc()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    refresher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await refresher
    await writer.stop()


def _quiet_gc() -> tuple[int, ...]:
    """Keep CPython's cyclic garbage collector off the ingest path; returns the old thresholds.

    Ingest allocates tens of thousands of objects a second. With the default thresholds the
    collector ran about 60 times a second and, every few seconds, walked the whole heap (some
    115,000 objects left by imports), each time a pause of 80 to 160 ms that every waiting
    request paid. The objects alive now are frozen out of the collections (after collecting
    the garbage among them), and the youngest generation waits for 10,000 new objects, not 700.
    Reference counting still frees everything that is not in a cycle at once.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, *thresholds[1:])
    return thresholds
