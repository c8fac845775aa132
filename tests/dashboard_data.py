"""Data for the tests of the overview, drawdowns and process pages, made with the real storage functions:
tracker events through the collector's checks, the analysis run, flags as the analysis stores them."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from collector.events import check_events, parse_batch
from kernel import band_versions, flag_store, processes, storage
from kernel.settings import Settings
from tests.test_processes import EXAMPLE

TODAY = datetime.now(UTC).date()
# The bands of the tiny site: offer 1-2-4 minutes, needs 30 s-1.5-3 minutes.
BANDS = {"offer": (60_000, 120_000, 240_000), "needs": (30_000, 90_000, 180_000)}


def load_process(client: storage.Client, site: str = "crm") -> None:
    processes.load(client, processes.parse(EXAMPLE.read_text(), site), actor="test", reason="first version")


def set_bands(client: storage.Client, site: str = "crm") -> None:
    for step, (low, reference, high) in BANDS.items():
        band_versions.add_version(client, site, step, "", low, reference, high, TODAY - timedelta(days=60),
                                  actor="test", reason="test bands")


def store_events(client: storage.Client, settings: Settings, site: str, events: list[dict[str, Any]]) -> None:
    checked = check_events(parse_batch(json.dumps({"site": "k", "events": events}).encode()), site=site,
                           settings=settings)
    assert len(checked.visits) + len(checked.sessions) == len(events), checked
    storage.insert_visits(client, b"\n".join(checked.visits))
    storage.insert_session_events(client, b"\n".join(checked.sessions))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def served(manager: str, session: str, start: datetime, steps: dict[str, int], *, ended: bool = True
           ) -> list[dict[str, Any]]:
    """One service session: a start event, one visit per step (active ms), an end event 10 minutes on."""
    events: list[dict[str, Any]] = [{"type": "session", "event_id": str(uuid.uuid4()), "action": "start",
                                     "session_id": session, "manager": manager, "process": "sales",
                                     "at": _ms(start)}]
    for step, active in steps.items():
        events.append({"type": "visit", "visit_id": str(uuid.uuid4()), "seq": 0, "manager": manager,
                       "session_id": session, "process": "sales", "step": step, "started_at": _ms(start),
                       "active_ms": active, "idle_ms": 0, "hidden_ms": 0})
    if ended:
        events.append({"type": "session", "event_id": str(uuid.uuid4()), "action": "end", "session_id": session,
                       "manager": manager, "process": "sales", "at": _ms(start + timedelta(minutes=10)),
                       "outcome": "sale"})
    return events


def tiny_site(client: storage.Client, settings: Settings, site: str = "crm") -> None:
    """Four weeks of two sessions a day for m1, m2 (team north) and m3 (south): m1 is slow on the offer
    (about 400 s against a maximum of 240 s), m3 suspiciously fast (30 s against a minimum of 60 s)."""
    load_process(client, site)
    set_bands(client, site)
    offer = {"m1": 400_000, "m2": 130_000, "m3": 30_000}
    events: list[dict[str, Any]] = []
    for back in range(1, 29):
        day = TODAY - timedelta(days=back)
        for hour in (10, 14):
            start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
            for manager, offer_ms in offer.items():
                jitter = (back * 7 + hour) % 11 * 1000
                events += served(manager, f"{manager}-{day:%m%d}-{hour}", start,
                                 {"offer": offer_ms + jitter, "needs": 100_000 + jitter})
    for chunk in range(0, len(events), 400):
        store_events(client, settings, site, events[chunk:chunk + 400])


def make_flag(client: storage.Client, site: str, *, kind: str = "slow", team: str = "north", step: str = "offer",
              manager: str = "m1", status: str = "open", minutes_lost: float = 60.0,
              managers: tuple[str, ...] = (), opened_days_ago: int = 3, median_ms: float = 400_000
              ) -> flag_store.StoredFlag:
    """A flag as the analysis opened it `opened_days_ago`: stored, with its opening event then (the
    analysis records it at the time of the run; flag_store.record_event always says now)."""
    opened = datetime.now(UTC) - timedelta(days=opened_days_ago)
    flag = flag_store.StoredFlag(
        flag_id=str(uuid.uuid4()), site=site, kind=kind, team=team, step=step, manager=manager, managers=managers,
        status="open", opened_at=opened, updated_at=opened, resolved_at=None,
        window_start=TODAY - timedelta(days=13), window_end=TODAY, n=28, median_ms=median_ms, min_ms=60_000,
        reference_ms=120_000, max_ms=240_000, q_value=None, start_date=TODAY - timedelta(days=20),
        periods_in_drawdown=4, minutes_lost_per_week=minutes_lost, severity=1,
        reasons=("median above the maximum of the band",), periods_without_condition=0,
        last_period=TODAY - timedelta(days=TODAY.weekday()), version=0)
    flag_store.write(client, [flag])
    client.insert("flag_events", [[flag.flag_id, site, opened, "analysis", "", "open", ""]],
                  column_names=["flag_id", "site", "at", "actor", "from_status", "to_status", "reason"])
    if status != "open":
        flag = flag_store.change_status(client, flag, status, actor="test", reason="made by the test")
    return flag


def store_pair_stats(client: storage.Client, site: str, rows: list[dict[str, Any]], since: date, until: date) -> None:
    """Per-pair figures of an analysis run, stored as analysis_run.save_stats stores them."""
    now = datetime.now(UTC)
    client.insert("pair_stats", [[site, now, since, until, r["team"], r["manager"], r["step"], json.dumps(r)]
                                 for r in rows],
                  column_names=["site", "run_at", "window_start", "window_end", "team", "manager", "step", "row"])
    time.sleep(0.002)  # the next run is later


def stats_row(site: str, team: str, manager: str, step: str, median_ms: float, n: int = 30,
              band: tuple[int, int, int] = (60_000, 120_000, 240_000)) -> dict[str, Any]:
    """One row as `stepwatch stats --json` prints it (only what the overview reads is filled in)."""
    return {"site": site, "team": team, "manager": manager, "step": step, "n": n, "median_ms": median_ms,
            "p25_ms": median_ms * 0.8, "p75_ms": median_ms * 1.2, "p90_ms": median_ms * 1.5,
            "share_above_max": 0.0, "share_below_min": 0.0,
            "band": {"min_ms": band[0], "reference_ms": band[1], "max_ms": band[2]},
            "status": "insufficient" if n < 20 else "ok", "q_value": None,
            "minutes_lost_per_week": max(0.0, (median_ms - band[1]) * n / 2 / 60_000), "flag_id": None,
            "reasons": []}


async def drawdown_page(api: Any, flag: flag_store.StoredFlag) -> tuple[dict[str, Any], str]:
    """A drawdown's JSON twin and its HTML page, as the signed-in client reads them."""
    data = await (await api.get(f"/api/v1/drawdowns/{flag.flag_id}")).json()
    html = await (await api.get(f"/drawdowns/{flag.flag_id}")).text()
    return data, html
