"""POST /v1/discovery: the page-view counts of unmatched path patterns, while a site's discovery is on.

A report is exactly `{"site": KEY, "counts": {"/pattern/:id": N, ...}}`; anything more is refused
with a 400 naming the field (discovery takes no time, manager, session or content). Status codes:
    202  counted (patterns a step matches by now, and what cleaning could not make a pattern, are
         left out and counted in `dropped`)
    400  not that shape: the field at fault is named
    401  unknown or disabled site key
    403  the page's origin is not allowed for the site
    409  discovery is not switched on for the site: stop sending
    413  body or number of patterns above the limits
    415  content type other than application/json or text/plain
    429  rate limited (Retry-After)

Counts are added up in memory per site, pattern and day and written every few seconds
(`DiscoveryCounts.flush`): a crash loses at most those seconds of an approximate count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import orjson
from aiohttp import web

from collector import keys
from collector.ratelimit import RateLimiter
from collector.views import ALLOWED_TYPES, _cors, client_address, error, read_body
from kernel import app_keys, discovery, processes
from kernel.storage import Store

MAX_BODY = 16_384  # bytes
MAX_PATTERNS = 50  # in one report
MAX_COUNT = 1_000  # page views of one pattern in one report
FLUSH_S = 5.0
# A page sends a report when it is hidden or closed, and once a minute while open: an office behind one
# address sends a few a second at most.
ADDRESS_RATE, ADDRESS_BURST = 10.0, 60.0
SITE_RATE, SITE_BURST = 100.0, 500.0

log = logging.getLogger("stepwatch.collector")


class DiscoveryCounts:
    """Page views per (site, pattern, day) waiting to be written, and the limits on reports."""

    def __init__(self) -> None:
        self.pending: Counter[tuple[str, str, date]] = Counter()
        self.address = RateLimiter(ADDRESS_RATE, ADDRESS_BURST)
        self.site = RateLimiter(SITE_RATE, SITE_BURST)

    def add(self, site: str, counts: dict[str, int], day: date) -> None:
        for pattern, views in counts.items():
            self.pending[(site, pattern, day)] += views

    async def flush(self, store: Store) -> None:
        taken, self.pending = self.pending, Counter()
        by_site_day: dict[tuple[str, date], dict[str, int]] = {}
        for (site, pattern, day), views in taken.items():
            by_site_day.setdefault((site, day), {})[pattern] = views
        try:
            for (site, day), counts in by_site_day.items():
                await store.run(discovery.record, site, counts, day)
        except Exception as exc:  # storage down: the counts wait for the next flush
            self.pending.update(taken)
            log.warning("cannot store discovery counts", extra={"error": str(exc)})

    async def run(self, store: Store) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.flush(store)


COUNTS = web.AppKey("discovery_counts", DiscoveryCounts)


def check(body: bytes) -> tuple[str, dict[str, int]]:
    """(site key, counts) from a report; ValueError naming the field otherwise."""
    try:
        report = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("body is not valid JSON") from None
    if not isinstance(report, dict):
        raise ValueError("body must be a JSON object: {\"site\": KEY, \"counts\": {PATTERN: N}}")
    for name in report:
        if name not in ("site", "counts"):
            shown = name if isinstance(name, str) and len(name) <= 40 and name.isprintable() else "?"
            raise ValueError(f"{shown}: not accepted; a discovery report holds only site and counts "
                             "(no time, manager, session or content)")
    site, counts = report.get("site"), report.get("counts")
    if not isinstance(site, str) or not site:
        raise ValueError("site: the site key is required")
    if not isinstance(counts, dict):
        raise ValueError("counts: must be an object of path pattern -> page views")
    if len(counts) > MAX_PATTERNS:
        raise OverflowError(f"counts: at most {MAX_PATTERNS} patterns in one report")
    for pattern, views in counts.items():
        if not isinstance(views, int) or isinstance(views, bool) or not 1 <= views <= MAX_COUNT:
            raise ValueError(f"counts: page views must be whole numbers from 1 to {MAX_COUNT}")
        if len(pattern) > discovery.MAX_PATTERN:
            raise ValueError(f"counts: a pattern has at most {discovery.MAX_PATTERN} characters")
    return site, counts


async def post_discovery(request: web.Request) -> web.Response:
    app = request.app
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type not in ALLOWED_TYPES:
        return error(415, "content type must be application/json or text/plain", request=request)
    if request.content_length is not None and request.content_length > MAX_BODY:
        return error(413, f"body larger than {MAX_BODY} bytes", request=request)
    try:
        body = await read_body(request, MAX_BODY)
    except web.RequestPayloadError:
        return error(400, "body cannot be read", request=request)
    if body is None:
        return error(413, f"body larger than {MAX_BODY} bytes", request=request)
    try:
        key, counts = check(body)
    except OverflowError as exc:
        return error(413, str(exc), request=request)
    except ValueError as exc:
        return error(400, str(exc), request=request)

    sites = app[keys.SITES]
    site = sites.by_key(key)
    if site is None or not site.enabled:
        return error(401, "unknown or disabled site key", request=request)
    origin = request.headers.get("Origin")
    if origin is not None and not sites.allows_origin(site, origin):
        return error(403, f"origin {origin} is not allowed for this site", request=request)
    if not sites.discovering(site):
        return error(409, "discovery is not switched on for this site: stop sending reports", request=request)
    limits = app[COUNTS]
    wait = limits.address.check(client_address(request, app[app_keys.SETTINGS])) or limits.site.check(site.name)
    if wait > 0:
        return error(429, "rate limited", headers={"Retry-After": str(max(1, math.ceil(wait)))}, request=request)

    process = sites.process(site)
    kept: dict[str, int] = {}
    dropped = 0
    for pattern, views in counts.items():
        clean = discovery.sanitize(pattern)
        if clean is None or process is not None and processes.match(process, clean) is not None:
            dropped += 1
            continue
        kept[clean] = kept.get(clean, 0) + views
    limits.add(site.name, kept, datetime.now(UTC).date())
    response = web.json_response({"counted": len(kept), "dropped": dropped}, status=202)
    _cors(request, response)
    return response


async def resources(app: web.Application) -> AsyncIterator[None]:
    counts = app[COUNTS] = DiscoveryCounts()
    store = app[app_keys.STORE]
    task = asyncio.create_task(counts.run(store))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await counts.flush(store)
