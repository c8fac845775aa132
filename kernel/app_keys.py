"""Typed keys of what the application puts on the aiohttp application for every part to read.

stepwatch.app.create_app sets both before any part's `setup`; the collector and the dashboards
read them. What one part keeps for itself has its key in that part (collector/keys.py).
"""

from __future__ import annotations

from aiohttp import web

from kernel.settings import Settings
from kernel.storage import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
