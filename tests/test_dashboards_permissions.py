"""The permission matrix: every role against every page, its JSON twin and every action.

The expected answers are written out here, not derived from the code: changing who may see or do
something means changing this table. A route the table does not list fails the completeness test.
Anonymous: pages redirect to the login, the JSON API answers 401. "ok" = the role is let through (the
action then answers 200, or 400/409 for its own reasons), 403 = refused with a reason, 404 = not there
for this account: what it may not see answers as an id that does not exist would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import coaching
from coaching.lifecycle import Target
from coaching.permissions import Operator
from dashboards.web import API_ROUTES
from kernel import storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import load_process, make_flag, set_bands
from tests.web_helpers import PASSWORD, SECRET, csrf_of, make_accounts

ROLES = ("anonymous", "admin", "director", "trainer", "manager")
# dora leads north (m1, m2); tom mentors m1 (north), tina mentors m3 (south); max is m1
ACCOUNT = {"admin": "ada", "director": "dora", "trainer": "tom", "manager": "max"}

# path (with the sample's placeholders) -> expected answer for admin, director, trainer, manager
PAGES: dict[str, tuple[Any, ...]] = {
    "/overview": (200, 200, 403, 403),
    "/drawdowns": (200, 200, 403, 403),
    "/drawdowns/{north_flag}": (200, 200, 403, 403),
    "/drawdowns/{south_flag}": (200, 403, 403, 403),
    "/managers/m1": (200, 200, 200, 200),  # tom coaches m1; max is m1
    "/managers/m2": (200, 200, 403, 403),
    "/managers/m3": (200, 403, 403, 403),
    "/me": (403, 403, 403, 200),
    "/steps": (200, 200, 200, 403),
    "/flow": (200, 200, 200, 200),  # a manager sees their own paths, a trainer their trainees'
    "/flow?manager=m1": (200, 200, 200, 200),
    "/flow?manager=m3": (200, 403, 403, 403),
    "/flow?team=south": (200, 403, 403, 403),
    "/steps/offer": (200, 200, 200, 403),
    "/process": (200, 200, 403, 403),
    "/process?test=/clients/42/needs": (200, 200, 403, 403),  # the URL tester
    "/extension": (200, 403, 403, 403),
    "/extension/setup": (200, 200, 200, 200),
    "/audit": (200, 200, 403, 403),
    "/managers": (200, 403, 403, 403),
    "/coaching": (200, 200, 200, 200),
    "/coaching/new": (200, 200, 403, 403),
    "/coaching/catalog": (200, 200, 200, 403),
    "/coaching/effectiveness": (200, 200, 200, 403),
    "/coaching/assignments/{assignment}": (200, 200, 200, 200),
    "/coaching/assignments/{south_assignment}": (200, 404, 404, 404),
}

# Files only the API serves: path -> expected answer for admin, director, trainer, manager.
DOWNLOADS: dict[str, tuple[int, ...]] = {
    "/me/export?site=crm": (403, 403, 403, 200),  # a manager's own data; admins use `stepwatch managers export`
    "/me/identity-token?site={site_key}": (403, 403, 403, 200),  # the extension's signed identity: managers only
}

# path -> (JSON body, expected for admin, director, trainer, manager); tried in the order manager, trainer,
# director, admin, so a refused attempt never changes what the next role meets.
ACTIONS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "/drawdowns/{north_flag}/ack": ({}, ("ok", "ok", "403", "403")),
    "/drawdowns/{south_flag}/ack": ({}, ("ok", "403", "403", "403")),
    "/drawdowns/{north_flag}/resolve": ({"reason": "fixed"}, ("ok", "ok", "403", "403")),
    "/drawdowns/{south_flag}/dismiss": ({"reason": "holiday"}, ("ok", "403", "403", "403")),
    "/drawdowns/{north_flag}/reopen": ({"reason": "again"}, ("ok", "ok", "403", "403")),
    "/steps/offer/bands": ({"min": "1m", "reference": "2m", "max": "4m", "team": "north", "reason": "matrix"},
                           ("ok", "ok", "403", "403")),
    "/steps/needs/bands": ({"min": "1m", "reference": "2m", "max": "4m", "team": "south", "reason": "matrix"},
                           ("ok", "403", "403", "403")),
    "/coaching/assign": ({"manager": "m2", "step": "offer", "kind": "mentor_meeting", "mentor": "tom",
                          "due": "{due}", "target_minutes": 2, "within_days": 40}, ("ok", "ok", "403", "403")),
    "/coaching/assignments/{assignment}/schedule": ({"meeting_at": "{meeting}"}, ("ok", "403", "ok", "403")),
    "/coaching/assignments/{assignment}/done": ({}, ("ok", "403", "ok", "403")),
    "/coaching/assignments/{assignment}/evaluate": ({}, ("ok", "ok", "ok", "403")),
    # only the coached manager acknowledges and asks (an admin neither); whoever else sees it answers (here a
    # question that does not exist: 400, past the permission check)
    "/coaching/assignments/{assignment}/acknowledge": ({}, ("403", "403", "403", "ok")),
    "/coaching/assignments/{assignment}/ask": ({"text": "matrix"}, ("403", "403", "403", "ok")),
    "/coaching/assignments/{assignment}/answer": ({"question_id": "00000000-0000-0000-0000-000000000001",
                                                  "text": "matrix"}, ("ok", "ok", "ok", "403")),
    "/coaching/assignments/{south_assignment}/ask": ({"text": "matrix"}, ("403", "404", "404", "404")),
    "/coaching/assignments/{assignment}/cancel": ({"reason": "matrix"}, ("ok", "ok", "403", "403")),
    "/coaching/assignments/{south_assignment}/cancel": ({"reason": "matrix"}, ("ok", "404", "404", "404")),
    "/coaching/assignments/{south_assignment}/schedule": ({"meeting_at": "{meeting}"}, ("ok", "404", "404", "404")),
    "/coaching/assignments/{south_assignment}/evaluate": ({}, ("ok", "404", "404", "404")),
    "/coaching/courses": ({"title": "Matrix course", "steps": ["offer"]}, ("ok", "ok", "ok", "403")),
    "/coaching/mentors": ({"name": "tina", "steps": ["offer"]}, ("ok", "ok", "403", "403")),
    "/coaching/mentors?own": ({"name": "tom", "steps": ["offer", "needs"]}, ("ok", "ok", "ok", "403")),  # own steps
    "/coaching/notifications/{message}/retry": ({}, ("404", "404", "403", "403")),  # no such message
    "/managers/m1/name": ({"name": "Matrix Name"}, ("ok", "403", "403", "403")),
    "/process/cost": ({"cost_per_hour": 50, "currency": "EUR"}, ("ok", "403", "403", "403")),
    "/process/step": ({"title": "Matrix step", "patterns": ["/matrix/*"], "reason": "matrix"},
                      ("ok", "403", "403", "403")),
    "/process/step/remove": ({"step": "closing", "reason": "matrix"}, ("ok", "403", "403", "403")),
    "/process/discovery": ({"days": 3, "reason": "matrix"}, ("ok", "403", "403", "403")),
    "/me/notes": ({"step": "offer", "week": "{week}", "text": "CRM outage"}, ("403", "403", "403", "ok")),
    "/me/notes/{message}/withdraw": ({}, ("403", "403", "403", "404")),  # no such note of theirs
    "/account/language": ({"language": "en"}, ("ok", "ok", "ok", "ok")),
}


@pytest.fixture
async def world(aiohttp_client: Any, settings: Settings, client: storage.Client, site: Any) -> dict[str, Any]:
    make_accounts(client)
    load_process(client)
    set_bands(client)
    from kernel import teams, users

    users.add_user(client, "sven", "director", PASSWORD, teams=("south",), actor="test")
    users.add_user(client, "tina", "trainer", PASSWORD, actor="test")
    root = Operator("test")
    coaching.set_mentor(client, root, site="crm", name="tom", steps=["offer", "needs"])
    coaching.set_mentor(client, root, site="crm", name="tina", steps=["offer"])
    due = datetime.now(UTC).date() + timedelta(days=5)
    dora, sven = users.get_user(client, "dora"), users.get_user(client, "sven")
    north = coaching.assign(client, settings, dora, site="crm", manager="m1", step="offer", kind="mentor_meeting",
                            mentor="tom", due=due, target=Target(120_000, 40))
    south = coaching.assign(client, settings, sven, site="crm", manager="m3", step="offer", kind="mentor_meeting",
                            mentor="tina", due=due, target=Target(120_000, 40))
    assert teams.members(client, "crm")["m3"] == "south"
    api = await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                      "analysis_interval_s": 0})))
    samples = {"north_flag": make_flag(client, "crm", manager="m1", step="offer").flag_id,
               "south_flag": make_flag(client, "crm", team="south", manager="m3", step="payment").flag_id,
               "assignment": north.assignment_id, "south_assignment": south.assignment_id,
               "message": "00000000-0000-0000-0000-000000000000",
               "due": (due + timedelta(days=2)).isoformat(),
               "meeting": (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"),
               "week": (datetime.now(UTC).date() - timedelta(days=7)).isoformat(), "site_key": site.key}
    return {"api": api, "samples": samples}


async def sign_in(api: Any, role: str) -> str:
    api.session.cookie_jar.clear()
    if role == "anonymous":
        return ""
    form = await api.get("/login")
    response = await api.post("/login", data={"name": ACCOUNT[role], "password": PASSWORD,
                                              "csrf": csrf_of(await form.text())}, allow_redirects=False)
    assert response.status == 303
    return csrf_of(await (await api.get("/coaching")).text())


def fill(template: str, samples: dict[str, str]) -> str:
    return template.format(**samples)


def fill_body(body: dict[str, Any], samples: dict[str, str]) -> dict[str, Any]:
    return {k: fill(v, samples) if isinstance(v, str) else v for k, v in body.items()}


@pytest.mark.slow
async def test_every_role_against_every_page_and_its_json_twin(world: dict[str, Any]) -> None:
    api, samples = world["api"], world["samples"]
    wrong: list[str] = []
    for role in ROLES:
        await sign_in(api, role)
        for template, expected in PAGES.items():
            path = fill(template, samples)
            page = await api.get(path, allow_redirects=False)
            twin = await api.get("/api/v1" + path)
            if role == "anonymous":
                if page.status != 303 or not page.headers.get("Location", "").startswith("/login"):
                    wrong.append(f"anonymous {path}: page {page.status}")
                if twin.status != 401:
                    wrong.append(f"anonymous /api/v1{path}: {twin.status}")
                continue
            want = expected[("admin", "director", "trainer", "manager").index(role)]
            for kind, response in (("page", page), ("json", twin)):
                if response.status != want:
                    wrong.append(f"{role} {kind} {path}: {response.status}, expected {want}")
                elif want == 403 and kind == "json" and not (await response.json()).get("error"):
                    wrong.append(f"{role} {path}: a 403 without a reason")
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
async def test_every_role_against_every_download(world: dict[str, Any]) -> None:
    api, samples = world["api"], world["samples"]
    wrong: list[str] = []
    for role in ROLES:
        await sign_in(api, role)
        for template, expected in DOWNLOADS.items():
            path = "/api/v1" + fill(template, samples)
            response = await api.get(path)
            want = 401 if role == "anonymous" else expected[("admin", "director", "trainer", "manager").index(role)]
            if response.status != want:
                wrong.append(f"{role} {path}: {response.status}, expected {want}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
async def test_every_role_against_every_action(world: dict[str, Any]) -> None:
    api, samples = world["api"], world["samples"]
    wrong: list[str] = []
    for role in ("anonymous", "manager", "trainer", "director", "admin"):
        token = await sign_in(api, role)
        for template, (body, expected) in ACTIONS.items():
            path = fill(template, samples).split("?")[0]
            response = await api.post("/api/v1" + path, json=fill_body(body, samples),
                                      headers={"X-CSRF-Token": token} if token else {})
            if role == "anonymous":
                if response.status != 401:
                    wrong.append(f"anonymous POST {path}: {response.status}")
                continue
            want = expected[("admin", "director", "trainer", "manager").index(role)]
            got = str(response.status) if response.status in (401, 403, 404, 500) else "ok"
            if got != want:
                wrong.append(f"{role} POST {path}: {response.status} {await response.text()}, expected {want}")
    assert not wrong, "\n".join(wrong)


def test_the_matrix_lists_every_route(settings: Settings) -> None:
    import re

    app = create_app(settings.model_copy(update={"secret_key": SECRET}))
    samples = {"north_flag": "f1", "south_flag": "f2", "assignment": "a1", "south_assignment": "a2", "message": "x",
               "due": "", "meeting": "", "week": "", "site_key": "pk"}
    listed = [fill(p, samples).split("?")[0] for p in [*PAGES, *ACTIONS, *DOWNLOADS]]
    missing = []
    for route in app[API_ROUTES]:
        pattern = re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(route.path.removeprefix("/api/v1"))) + "$")
        if not any(pattern.match(path) for path in listed):
            missing.append(route.path)
    assert not missing, f"add these routes to the permission matrix: {missing}"
