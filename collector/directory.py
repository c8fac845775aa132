"""The collector's in-memory view of the sites and their processes, refreshed every few seconds.

Looking a site up must not cost a query per request, and ingest must go on while ClickHouse
is down, even across a restart: every refresh also writes a snapshot next to the spool
(mode 0600: it holds the sites' secrets), which is loaded when ClickHouse cannot be reached.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from kernel import discovery, processes
from kernel.errors import InvalidInput
from kernel.sites import Pseudonyms, Site, list_sites
from kernel.storage import Store


@dataclass(frozen=True)
class TrackerConfig:
    """What GET /v1/config/{site_key} answers, serialized once per refresh."""

    body: bytes
    etag: str
    origins: tuple[str, ...]

log = logging.getLogger("stepwatch.collector")

DISCOVERY_SCRIPT = "/discovery.js"  # served next to /tracker.js (collector/__init__.py)


class SiteDirectory:
    def __init__(self, store: Store, snapshot: Path, refresh_s: float = 5.0):
        self.store = store
        self.snapshot = snapshot
        self.refresh_s = refresh_s
        self._by_key: dict[str, Site] = {}
        self._origins: frozenset[str] = frozenset()
        self._configs: dict[str, TrackerConfig] = {}
        self._allowed: dict[tuple[str, str], bool] = {}
        self._pseudonyms: dict[str, Pseudonyms] = {}
        self._attributes: dict[str, dict[str, tuple[str, ...]]] = {}
        self._processes: dict[str, processes.Process] = {}
        self._discovering: dict[str, datetime] = {}  # site name -> until (UTC)

    def by_key(self, key: str) -> Site | None:
        return self._by_key.get(key)

    def allows_origin(self, site: Site, origin: str) -> bool:
        """site.allows_origin, remembered until the next refresh (parsing an origin costs a URL parse)."""
        known = self._allowed.get((site.key, origin))
        if known is None:
            if len(self._allowed) > 10_000:  # origins are chosen by the sender: bound what they cost
                self._allowed.clear()
            known = self._allowed[(site.key, origin)] = site.allows_origin(origin)
        return known

    def origin_known(self, origin: str) -> bool:
        """Whether any enabled site allows this origin (answers CORS preflights)."""
        from kernel.sites import normalize_origin

        return normalize_origin(origin, strict=False) in self._origins

    def config(self, key: str) -> TrackerConfig | None:
        return self._configs.get(key)

    def attributes(self, site: Site) -> dict[str, tuple[str, ...]]:
        """The session attributes the site's process declares (none before a process is loaded)."""
        return self._attributes.get(site.name, {})

    def process(self, site: Site) -> processes.Process | None:
        return self._processes.get(site.name)

    def discovering(self, site: Site) -> bool:
        """Whether the site's discovery is on (as of the last refresh, and not ended since)."""
        until = self._discovering.get(site.name)
        return until is not None and until > datetime.now(UTC)

    def pseudonyms(self, site: Site) -> Pseudonyms | None:
        """The site's customer pseudonyms; None while its key is unknown (a snapshot older than the key)."""
        return self._pseudonyms.get(site.key)

    def _set(self, sites: list[Site], by_site: dict[str, processes.Process] | None = None,
             discovering: dict[str, datetime] | None = None) -> None:
        self._by_key = {site.key: site for site in sites}
        self._allowed = {}
        self._origins = frozenset(o for site in sites if site.enabled for o in site.origins)
        # Kept across refreshes while the key stays the same: they remember what they computed.
        before, self._pseudonyms = self._pseudonyms, {}
        for site in sites:
            known = before.get(site.key)
            if known is not None and known.pseudonym_key == site.pseudonym_key:
                self._pseudonyms[site.key] = known
            elif site.pseudonym_key:
                self._pseudonyms[site.key] = Pseudonyms(site.pseudonym_key)
        if discovering is not None:
            self._discovering = discovering
        if by_site is not None:
            self._processes = by_site
            self._attributes = {name: process.attributes for name, process in by_site.items()}
            self._configs = {
                site.key: tracker_config(site, by_site[site.name], site.name in self._discovering)
                for site in sites
                if site.enabled and site.name in by_site
            }

    async def refresh(self) -> bool:
        try:
            sites = await self.store.run(list_sites)
            by_site = await self.store.run(processes.all_latest)
            windows = await self.store.run(discovery.open_windows)
        except Exception as exc:
            if not self._by_key:
                self._load_snapshot()
            log.warning("cannot refresh sites", extra={"error": str(exc)})
            return False
        self._set(sites, by_site, {name: w.until for name, w in windows.items()})
        await asyncio.get_running_loop().run_in_executor(None, self._save_snapshot, sites, by_site)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()

    def _save_snapshot(self, sites: list[Site], by_site: dict[str, processes.Process]) -> None:
        self.snapshot.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.snapshot.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({
                "sites": [site.__dict__ for site in sites],
                "processes": {name: {"version": p.version, **p.definition()} for name, p in by_site.items()},
            }, f)
        os.replace(tmp, self.snapshot)

    def _load_snapshot(self) -> None:
        try:
            raw = json.loads(self.snapshot.read_text())
            sites = [Site(**{**item, "origins": tuple(item["origins"])}) for item in raw["sites"]]
            by_site = {}
            for name, definition in raw["processes"].items():
                version = definition.pop("version")
                by_site[name] = replace(processes.from_definition(definition, name), version=version)
            self._set(sites, by_site)
        except (OSError, ValueError, TypeError, KeyError, InvalidInput):
            pass


def tracker_config(site: Site, process: processes.Process, discovering: bool = False) -> TrackerConfig:
    """The tracker's view of a site: its steps' URL rules and options, nothing private; while discovery
    is on, where the discovery script is (the tracker loads it from the collector it came from)."""
    config = {
        "site": site.key,
        "process": process.key,
        "version": process.version,
        "require_identity": site.require_identity,
        "salt": site.salt,
        **asdict(process.tracker),
        "steps": [{"key": step.key, "patterns": list(step.patterns)} for step in process.steps],
    }
    if process.attributes:  # the tracker sends only these names and values
        config["attributes"] = {name: list(values) for name, values in process.attributes.items()}
    if discovering:
        config["d"] = DISCOVERY_SCRIPT + "?site=" + site.key
    body = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    return TrackerConfig(body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"', site.origins)
