"""Typed keys of what the collector keeps on the aiohttp application (SETTINGS and STORE, which every
part reads, are in kernel/app_keys.py)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from collector.directory import SiteDirectory
from collector.events import Validator
from collector.ratelimit import RateLimiter
from collector.writer import EventWriter


@dataclass(frozen=True)
class Limits:
    site: RateLimiter
    address: RateLimiter


SITES = web.AppKey("sites", SiteDirectory)
WRITER = web.AppKey("writer", EventWriter)
LIMITS = web.AppKey("limits", Limits)
VALIDATOR = web.AppKey("validator", Validator)
