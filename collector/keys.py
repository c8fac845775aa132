"""Typed keys of what the collector keeps on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from collector.directory import SiteDirectory
from collector.events import Validator
from collector.ratelimit import RateLimiter
from collector.writer import EventWriter
from stepwatch.settings import Settings
from stepwatch.storage import Store


@dataclass(frozen=True)
class Limits:
    site: RateLimiter
    address: RateLimiter


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
SITES = web.AppKey("sites", SiteDirectory)
WRITER = web.AppKey("writer", EventWriter)
LIMITS = web.AppKey("limits", Limits)
VALIDATOR = web.AppKey("validator", Validator)
