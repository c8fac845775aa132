"""A small coaching organisation for the tests: a site with the example process, two teams, one
account per role, a catalog, and session times on the offer step whose truth is known."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import coaching
from coaching import catalog
from coaching.lifecycle import Target
from coaching.permissions import Operator
from kernel import processes, storage, teams, users
from kernel.users import User
from tests.web_helpers import csrf_of

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sales_desk.toml"
ROOT = Operator("test-admin")
NORTH = ["m-1", "m-2", "m-3", "m-4"]
SOUTH = ["s-1", "s-2"]
PASSWORD = "long enough pw"


@dataclass(frozen=True)
class Org:
    site: str
    admin: User
    dana: User  # director of north
    sam: User  # director of south
    tom: User  # trainer, mentor on offer and needs
    tina: User  # trainer, mentor on closing only
    max: User  # manager m-1 (north)
    mia: User  # manager m-2 (north)


def build_org(client: storage.Client, site: str) -> Org:
    processes.load(client, processes.parse(EXAMPLE.read_text(), site), actor="test")
    for team, members in (("north", NORTH), ("south", SOUTH)):
        teams.add_team(client, site, team, actor="test")
        teams.assign(client, site, team, members, actor="test")
    made = {}
    for name, role, led, manager_id in (("ada", "admin", (), ""), ("dana", "director", ("north",), ""),
                                        ("sam", "director", ("south",), ""), ("tom", "trainer", (), ""),
                                        ("tina", "trainer", (), ""), ("max", "manager", ("north",), "m-1"),
                                        ("mia", "manager", ("north",), "m-2")):
        made[name] = users.add_user(client, name, role, PASSWORD, teams=led, manager_id=manager_id, actor="test")
    catalog.add_course(client, ROOT, site=site, title="Offer basics", steps=["offer"], link="https://lms.example.com/1",
                       expected_minutes=45)
    catalog.add_course(client, ROOT, site=site, title="Offer workshop", steps=["offer", "needs"], self_paced=False)
    catalog.add_course(client, ROOT, site=site, title="Closing 101", steps=["closing"])
    catalog.set_mentor(client, ROOT, site=site, name="tom", steps=["offer", "needs"])
    catalog.set_mentor(client, ROOT, site=site, name="tina", steps=["closing"])
    return Org(site, made["ada"], made["dana"], made["sam"], made["tom"], made["tina"], made["max"], made["mia"])


def add_sessions(client: storage.Client, site: str, manager: str, first: date, last: date, median_s: float, *,
                 step: str = "offer", per_day: int = 6, sigma: float = 0.3, seed: int = 0,
                 received_at: datetime | None = None) -> int:
    """Sessions of one manager on one step, every weekday from `first` to `last`, lognormal around
    `median_s`; returns how many."""
    rng = np.random.default_rng(seed)
    rows = []
    day = first
    while day <= last:
        if day.weekday() < 5:
            for i in range(per_day):
                seconds = float(rng.lognormal(np.log(median_s), sigma))
                start = datetime(day.year, day.month, day.day, 9 + i, tzinfo=UTC).timestamp()
                row = {"site": site, "visit_id": str(uuid.uuid4()), "seq": 0, "final": True, "manager": manager,
                       "session_id": str(uuid.uuid4()), "customer": "c", "process": "sales", "step": step,
                       "path": f"/clients/:customer/{step}", "started_at": start,
                       "active_ms": int(seconds * 1000), "idle_ms": 0, "hidden_ms": 0, "tracker": "test",
                       "source": "test"}
                if received_at is not None:
                    row["received_at"] = received_at.timestamp()
                rows.append(orjson.dumps(row))
        day += timedelta(days=1)
    storage.insert_visits(client, b"\n".join(rows))
    return len(rows)


def today() -> date:
    return datetime.now(UTC).date()


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


async def sign_in(api: Any, name: str) -> str:
    """Sign in through the form as a coaching test's user; returns the session's CSRF token."""
    api.session.cookie_jar.clear()
    form = await api.get("/login")
    response = await api.post("/login", data={"name": name, "password": PASSWORD, "csrf": csrf_of(await form.text())},
                              allow_redirects=False)
    assert response.status == 303, await response.text()
    return csrf_of(await (await api.get("/coaching")).text())


def assign_meeting(client: storage.Client, settings: Any, org: Any, manager: str = "m-1", note: str = "") -> Any:
    """Dana assigns a mentor meeting with tom on the offer, due in 10 days, target 4 min within 30 days."""
    return coaching.assign(client, settings, org.dana, site=org.site, manager=manager, step="offer",
                           kind="mentor_meeting", mentor="tom", due=today() + timedelta(days=10),
                           target=Target(240_000, 30), note=note)
