"""HTTP handlers of the collector. Thin: check the request, call validation and the writer.

Status codes of POST /v1/events (docs/ingest.md has the table):
    200  every event stored, or some stored and the rest listed in `rejected`
    400  malformed JSON, a malformed envelope, or not one valid event (all listed)
    401  unknown or disabled site, or a missing/expired/forged signed identity
    403  the page's origin is not allowed for the site
    413  body or event count above the limits
    415  content type other than application/json or text/plain
    429  rate limited (Retry-After)
    503  storage unavailable and spool full (Retry-After)
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import json
import math
from dataclasses import replace
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from collector import keys, metrics
from collector.directory import TrackerConfig
from collector.events import BadBatch, ParsedBatch, batch_schema, check_events
from collector.identity import IdentityRejected, verify
from collector.spool import SpoolFull
from kernel import app_keys
from kernel.settings import Settings
from kernel.sites import Site
from kernel.storage import ping

ALLOWED_TYPES = ("application/json", "text/plain")


def error(status: int, reason: str, *, rejected: list[Any] | None = None, headers: dict[str, str] | None = None,
          request: web.Request | None = None) -> web.Response:
    body: dict[str, Any] = {"error": reason}
    if rejected is not None:
        body["accepted"] = 0
        body["rejected"] = rejected
    metrics.EVENTS_REJECTED.labels(reason=_reason_label(status)).inc()
    response = web.json_response(body, status=status, headers=headers)
    if request is not None:
        _cors(request, response)
    return response


def _reason_label(status: int) -> str:
    return {400: "bad_request", 401: "unauthorized", 403: "origin", 413: "too_large", 415: "content_type",
            429: "rate_limited", 503: "unavailable"}.get(status, str(status))


def _cors(request: web.Request, response: web.StreamResponse) -> None:
    # Answers carry the caller's origin so the tracker can read the status and stop retrying a 4xx;
    # whether events are accepted from that origin is decided per site, before anything is stored.
    origin = request.headers.get("Origin")
    if origin and origin != "null":  # sandboxed frames and file:// pages: anyone can be "null"
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"  # the tracker honours it
        response.headers["Vary"] = "Origin"


def client_address(request: web.Request, settings: Settings) -> str:
    """The address rate limits and login throttling count: see `forwarded_client`."""
    forwarded = request.headers.getall("X-Forwarded-For", None)
    if not forwarded:  # the common case: no proxy
        return request.remote or "unknown"
    return forwarded_client(request.remote, ",".join(forwarded), settings)


def forwarded_client(remote: str | None, forwarded: str, settings: Settings) -> str:
    """The client's address given the direct peer and the X-Forwarded-For header.

    The header is believed only from a proxy: with STEPWATCH_TRUSTED_PROXIES set, only when the
    direct peer is one of them; otherwise only with STEPWATCH_TRUST_FORWARDED_FOR on (the direct
    peer is then the one proxy). Each proxy appends the address it received from, so the entries a
    client writes itself are on the left: the header is read from the right, past the trusted
    proxies, and the first address that is not one of them is the client. If every entry is a
    trusted proxy, the left-most is. An entry that is no IP address ends the walk (what lies to
    its left was not written by a trusted proxy), and the last trusted hop seen stands in.
    """
    peer = remote or "unknown"
    networks = _networks(settings.trusted_proxies)
    if networks:
        if not _trusted(peer, networks):
            return peer
    elif not settings.trust_forwarded_for:
        return peer
    found = peer
    for entry in reversed(forwarded.split(",")):
        address = _address(entry)
        if address is None:
            break
        found = address
        if not _trusted(address, networks):
            break
    return found


@lru_cache(maxsize=8)
def _networks(trusted_proxies: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Settings.trusted_networks, parsed once (behind a proxy every request needs them)."""
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in trusted_proxies.split(",") if p.strip())


def _trusted(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _address(entry: str) -> str | None:
    """An X-Forwarded-For entry as an address (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`), else None."""
    text = entry.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    if len(text) > 45:  # the longest IPv6 text; bounds what a parse costs
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


async def post_events(request: web.Request) -> web.Response:
    app = request.app
    settings = app[app_keys.SETTINGS]
    headers = request.headers
    content_type = headers.get("Content-Type", "")
    if content_type not in ALLOWED_TYPES:  # the common case in one lookup; else parse it
        content_type = content_type.split(";")[0].strip().lower()
        if content_type not in ALLOWED_TYPES:
            return error(415, "content type must be application/json or text/plain", request=request)
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        return error(413, f"body larger than {settings.max_body_bytes} bytes", request=request)
    try:
        body = await read_body(request, settings.max_body_bytes)
    except web.RequestPayloadError:  # e.g. a Content-Encoding the body is not in, a broken chunk
        response = error(400, "body cannot be read: broken chunked encoding or a Content-Encoding it is not in",
                         request=request)
        response.force_close()  # where the next request would start is unknown
        return response
    if body is None:
        return error(413, f"body larger than {settings.max_body_bytes} bytes", request=request)
    try:
        batch = app[keys.VALIDATOR].parse(body)
    except BadBatch as exc:
        return error(400, str(exc), request=request)

    sites = app[keys.SITES]
    site = sites.by_key(batch.site)
    if site is None or not site.enabled:
        return error(401, "unknown or disabled site key", request=request)
    origin = headers.get("Origin")
    if origin is not None and not sites.allows_origin(site, origin):
        return error(403, f"origin {origin} is not allowed for this site", request=request)

    # The address first: a request it refuses spends none of the site's tokens, so one client
    # sending too much is refused alone instead of using up its site's share for everyone.
    limits = app[keys.LIMITS]
    wait = limits.address.check(client_address(request, settings)) if limits.address.rate > 0 else 0.0
    if wait == 0:
        wait = limits.site.check(site.name)
    if wait > 0:
        return error(429, "rate limited", headers={"Retry-After": str(max(1, math.ceil(wait)))}, request=request)
    if len(batch.events) > settings.max_batch_events:
        return error(413, f"more than {settings.max_batch_events} events in one batch", request=request)

    signed_manager = None
    if site.require_identity:
        try:
            signed_manager = _signed_manager(site, batch)
        except IdentityRejected as exc:
            return error(401, str(exc), request=request)

    pseudonyms = sites.pseudonyms(site)
    if pseudonyms is None:  # the site's key comes with the next refresh from ClickHouse
        return error(503, "this site's keys are not loaded yet", headers={"Retry-After": "30"}, request=request)
    checked = check_events(batch, site=site.name, settings=settings, signed_manager=signed_manager, compact=True,
                           pseudonyms=pseudonyms, attributes=sites.attributes(site))
    rejected = [{"index": r.index, "reason": r.reason} for r in checked.rejected]
    if rejected:
        metrics.INVALID_EVENTS.inc(len(rejected))
    if checked.accepted == 0 and rejected:
        return error(400, "no valid event in the batch", rejected=rejected, request=request)

    metrics.REQUEST_EVENTS.observe(len(batch.events))
    try:
        await app[keys.WRITER].submit(checked.visits, checked.sessions, checked.compact)
    except SpoolFull:
        return error(503, "storage unavailable and spool full", headers={"Retry-After": "30"}, request=request)
    metrics.VISITS_ACCEPTED.inc(len(checked.visits))
    metrics.SESSIONS_ACCEPTED.inc(len(checked.sessions))
    answer = b'{"accepted":%d,"rejected":%b}' % (checked.accepted, orjson.dumps(rejected) if rejected else b"[]")
    response = web.Response(body=answer, content_type="application/json", charset="utf-8")
    _cors(request, response)
    return response


async def read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, however it arrives (in one piece or several, with a Content-Length or
    chunked); None as soon as it grows past `limit`, without reading the rest."""
    content = request.content
    chunks = []
    size = 0
    while chunk := await content.readany():  # b"" only at the end of the body
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _signed_manager(site: Site, batch: ParsedBatch) -> str:
    """The one manager the batch's identity token signs; IdentityRejected if none."""
    managers = batch.managers()
    if not batch.identity:
        verify(site.secret, "", None)  # raises: a token is required
    last: IdentityRejected | None = None
    for manager in sorted(managers):
        try:
            verify(site.secret, manager, batch.identity)
            return manager
        except IdentityRejected as exc:
            last = exc
    raise last or IdentityRejected("identity token does not match the manager id")


async def preflight(request: web.Request) -> web.Response:
    origin = request.headers.get("Origin", "")
    if not origin or not request.app[keys.SITES].origin_known(origin):
        return error(403, "origin not allowed")
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "86400",
        "Vary": "Origin",
    })


async def tracker_config(request: web.Request) -> web.Response:
    """GET /v1/config/{site_key}: the site's steps and URL rules for the tracker (cacheable)."""
    config = request.app[keys.SITES].config(request.match_info["site_key"])
    if config is None:
        return error(404, "no enabled site with this key, or its process is not loaded yet", request=request)
    return _config_response(request, config)


async def extension_tracker_config(request: web.Request) -> web.Response:
    """GET /v1/extension/v1/config/{site_key}: the same for the tracker the browser extension runs (its
    data-api is EXTENSION_BASE), without step discovery: the page would import the discovery module from
    the collector, and an extension runs no code it does not carry (docs/extension.md)."""
    config = request.app[keys.SITES].config(request.match_info["site_key"])
    if config is None:
        return error(404, "no enabled site with this key, or its process is not loaded yet", request=request)
    return _config_response(request, without_discovery(config))


def without_discovery(config: TrackerConfig) -> TrackerConfig:
    parsed = json.loads(config.body)
    if "d" not in parsed:
        return config
    del parsed["d"]
    body = json.dumps(parsed, separators=(",", ":"), sort_keys=True).encode()
    return replace(config, body=body, etag='"' + hashlib.sha256(body).hexdigest()[:20] + '"')


def _config_response(request: web.Request, config: TrackerConfig) -> web.Response:
    headers = {"ETag": config.etag, "Cache-Control": "public, max-age=300", "Vary": "Origin"}
    origin = request.headers.get("Origin")
    if origin and _normalized_in(origin, config.origins):
        headers["Access-Control-Allow-Origin"] = origin
    if config.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=config.body, content_type="application/json", headers=headers)


def _normalized_in(origin: str, origins: tuple[str, ...]) -> bool:
    from kernel.sites import normalize_origin

    return normalize_origin(origin, strict=False) in origins


async def schema(request: web.Request) -> web.Response:
    return web.json_response(batch_schema(request.app[app_keys.SETTINGS].max_batch_events))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    writer = request.app[keys.WRITER]
    try:
        reachable = await request.app[app_keys.STORE].run(ping)
    except Exception:
        reachable = False
    body = {
        "storage": "ok" if reachable else "unavailable",
        "spool_bytes": writer.spool.bytes,
        "spool_events": writer.spool.events,
        "spool_limit_bytes": writer.spool.max_bytes,
    }
    return web.json_response(body, status=200 if reachable else 503)


async def prometheus(request: web.Request) -> web.Response:
    metrics.SPOOL_BYTES.set(request.app[keys.WRITER].spool.bytes)
    return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


class TrackerScript:
    """/tracker.js: minified, gzip-compressed once, cached by ETag."""

    def __init__(self, source: bytes, *, cors: bool = False):
        self.cors = cors
        self.plain = source
        self.gzipped = gzip.compress(source, compresslevel=9, mtime=0)
        self.etag = '"' + hashlib.sha256(source).hexdigest()[:20] + '"'

    async def serve(self, request: web.Request) -> web.Response:
        headers = {
            "ETag": self.etag,
            "Cache-Control": "public, max-age=3600, stale-while-revalidate=86400",
            "Content-Type": "application/javascript; charset=utf-8",
            "Vary": "Accept-Encoding",
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if self.cors:
            headers["Access-Control-Allow-Origin"] = "*"
        if self.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=self.gzipped, headers={**headers, "Content-Encoding": "gzip"})
        return web.Response(body=self.plain, headers=headers)
