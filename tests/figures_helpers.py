"""Data for the tests of the manager and step pages: visits inserted by the storage function the
collector uses, the daily pre-aggregate refreshed, bands and (optionally) an analysis run with its flags.

Session times are fixed numbers, so a test can compute every figure by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from coaching import assignments, catalog
from coaching.lifecycle import Target
from coaching.permissions import Operator
from kernel import band_versions, migrations, processes, sites, storage, users
from kernel.settings import Settings
from stepwatch import analysis_run
from tests.test_processes import EXAMPLE
from tests.web_helpers import SECRET, make_accounts

TODAY = datetime.now(UTC).date()
EVIL = "<script>alert(1)</script>"
EVIL_TITLE = f"Offer {EVIL}"


def visit(manager: str, session: str, step: str, day: date, active: int, idle: int = 0) -> dict[str, Any]:
    """One final report of a visit, with the columns storage.insert_visits takes (VISIT_COLUMNS)."""
    started = datetime(day.year, day.month, day.day, 10, tzinfo=UTC).timestamp()
    return {"visit_id": str(uuid.uuid4()), "seq": 0, "final": True, "manager": manager, "session_id": session,
            "customer": "", "process": "sales", "step": step, "path": f"/clients/:customer/{step}",
            "started_at": started, "active_ms": active, "idle_ms": idle, "hidden_ms": 0, "tracker": "test"}


def put(client: storage.Client, settings: Settings, site: str, visits: list[dict[str, Any]],
        source: str = "tracker") -> None:
    """Insert visits through the storage function the collector and the importer use."""
    rows = [orjson.dumps({"site": site, **v, "source": source}) for v in visits]
    assert all(set(orjson.loads(r)) == set(storage.VISIT_COLUMNS) for r in rows)
    storage.insert_visits(client, b"\n".join(rows))


def sessions(manager: str, step: str, times_ms: list[int], days: int = 28, *, tag: str = "") -> list[dict[str, Any]]:
    """One session per time, spread over the last `days` days (the newest first)."""
    return [visit(manager, f"{tag or manager}-{step}-{i}".replace("<", "").replace(">", "").replace("/", "")
                  .replace("(", "").replace(")", ""), step, TODAY - timedelta(days=i % days), t)
            for i, t in enumerate(times_ms)]


def spread(center_ms: int, count: int) -> list[int]:
    """`count` times around a center: center x (0.8 ... 1.2), deterministic."""
    return [round(center_ms * (0.8 + 0.4 * (i % 9) / 8)) for i in range(count)]


def build(client: storage.Client, settings: Settings, site: str = "crm", *, analyze: bool = True) -> None:
    """Accounts (web_helpers.make_accounts), the sales process with an unsafe step title, bands and sessions:

    offer band 60 s / 120 s / 240 s for everyone, 60 s / 150 s / 300 s for team north (an override);
    m1 (north) ~200 s within, m2 (north) ~400 s above (flagged slow), m3 (south) ~40 s below,
    EVIL (no team) a few sessions; m1 also has imported visits on needs. The trainer tom mentors m2.
    """
    make_accounts(client, site)
    text = EXAMPLE.read_text().replace('title = "Offer"', f'title = "{EVIL_TITLE}"')
    processes.load(client, processes.parse(text, site), actor="test")
    add = band_versions.add_version
    add(client, site, "offer", "", 60_000, 120_000, 240_000, TODAY - timedelta(days=90), actor="test", reason="pilot")
    add(client, site, "offer", "north", 60_000, 150_000, 300_000, TODAY - timedelta(days=20), actor="test",
        reason="north works differently")
    add(client, site, "needs", "", 100_000, 200_000, 400_000, TODAY - timedelta(days=90), actor="test", reason="pilot")
    events = (sessions("m1", "offer", spread(200_000, 56)) + sessions("m2", "offer", spread(400_000, 56))
              + sessions("m3", "offer", spread(40_000, 56)) + sessions(EVIL, "offer", spread(100_000, 6), tag="evil")
              + sessions("m1", "needs", spread(210_000, 30)))
    put(client, settings, site, events)
    put(client, settings, site, sessions("m1", "needs", spread(190_000, 10), tag="imp"), source="import:history.csv")
    storage.refresh_session_steps(client, site)
    if analyze:
        analysis_run.analyze(client, settings, only_site=site)
    # the trainer tom mentors m2 on offer: the one manager a trainer's scope holds
    catalog.set_mentor(client, Operator("test"), site=site, name="tom", steps=["offer"])
    assignments.assign(client, settings, users.get_user(client, "dora"), site=site, manager="m2", step="offer",
                       kind="mentor_meeting", mentor="tom", due=TODAY + timedelta(days=7),
                       target=Target(max_ms=300_000, within_days=30))


def built_store(engine_dir: Path, spool_dir: Path) -> Iterator[tuple[Settings, storage.Client]]:
    """A database of its own holding what `build` makes (analysed), for a module of read-only tests that
    builds it once (five accounts cost 2 s of Argon2id); dropped afterwards. Use with `yield from`."""
    settings = Settings(data_dir=engine_dir, database=f"t_{uuid.uuid4().hex[:12]}", spool_dir=spool_dir,
                        rate_limit_site=0, rate_limit_address=0, analysis_interval_s=0, secret_key=SECRET)
    client = storage.connect(settings)
    migrations.apply_pending(client, settings.retention_days)
    sites.add_site(client, "crm", ["https://crm.example.com"], actor="test")
    build(client, settings)
    yield settings, client
    client.command(f"DROP DATABASE IF EXISTS {settings.database} SYNC")
    client.close()
