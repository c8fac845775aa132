"""The collector's in-memory view of the sites, refreshed from ClickHouse every few seconds.

Looking a site up must not cost a query per request, and ingest must go on while ClickHouse
is down, even across a restart: every refresh also writes a snapshot next to the spool
(mode 0600: it holds the sites' secrets), which is loaded when ClickHouse cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from stepwatch.sites import Site, list_sites
from stepwatch.storage import Store

log = logging.getLogger("stepwatch.collector")


class SiteDirectory:
    def __init__(self, store: Store, snapshot: Path, refresh_s: float = 5.0):
        self.store = store
        self.snapshot = snapshot
        self.refresh_s = refresh_s
        self._by_key: dict[str, Site] = {}
        self._origins: frozenset[str] = frozenset()

    def by_key(self, key: str) -> Site | None:
        return self._by_key.get(key)

    def origin_known(self, origin: str) -> bool:
        """Whether any enabled site allows this origin (answers CORS preflights)."""
        from stepwatch.sites import normalize_origin

        return normalize_origin(origin, strict=False) in self._origins

    def _set(self, sites: list[Site]) -> None:
        self._by_key = {site.key: site for site in sites}
        self._origins = frozenset(o for site in sites if site.enabled for o in site.origins)

    async def refresh(self) -> bool:
        try:
            sites = await self.store.run(list_sites)
        except Exception as exc:
            if not self._by_key:
                self._load_snapshot()
            log.warning("cannot refresh sites", extra={"error": str(exc)})
            return False
        self._set(sites)
        await asyncio.get_running_loop().run_in_executor(None, self._save_snapshot, sites)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()

    def _save_snapshot(self, sites: list[Site]) -> None:
        self.snapshot.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.snapshot.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump([site.__dict__ for site in sites], f)
        os.replace(tmp, self.snapshot)

    def _load_snapshot(self) -> None:
        try:
            raw = json.loads(self.snapshot.read_text())
            self._set([Site(**{**item, "origins": tuple(item["origins"])}) for item in raw])
        except (OSError, ValueError, TypeError, KeyError):
            pass
