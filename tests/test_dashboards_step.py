"""The step pages and the band editor: who sees which managers, who may change which band, every change
audited with its reason, consistency errors next to their field, and the JSON API for scripts."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analysis.bands import suggest_band
from dashboards import figures
from dashboards.pages.step import duration_text, parse_duration, reference_interval
from kernel import audit, band_versions, sites, storage, teams, users
from kernel.errors import InvalidInput
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.figures_helpers import EVIL, EVIL_TITLE, TODAY, build, built_store, put, sessions, spread
from tests.web_helpers import SECRET, csrf_of, login

SVG = re.compile(r"<svg .*?</svg>", re.S)


# One xdist worker runs this module: its module-scoped data is built once.
pytestmark = pytest.mark.xdist_group("test_dashboards_step")


@pytest.fixture(scope="module")
def shared(engine_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, storage.Client]]:
    """One store for the tests that only read (accounts cost 2 s of Argon2id each build)."""
    yield from built_store(engine_dir, tmp_path_factory.mktemp("spool"))


@pytest.fixture
async def api(aiohttp_client: Any, shared: tuple[Settings, storage.Client]) -> Any:
    return await aiohttp_client(create_app(shared[0]))


@pytest.fixture
async def fresh(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    """A store of its own, for the tests that change bands."""
    build(client, settings, analyze=False)
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


def newest(client: storage.Client, step: str) -> band_versions.StoredBand:
    return max(band_versions.versions(client, "crm", step), key=lambda v: v.set_at)


# --- the list of steps -----------------------------------------------------------------------------------------


async def test_the_list_counts_managers_outside_the_band_per_step(api: Any) -> None:
    await login(api, "ada")
    data = await (await api.get("/api/v1/steps?site=crm")).json()
    assert [s["step"] for s in data["steps"]][:3] == ["identification", "needs", "products"]
    offer = next(s for s in data["steps"] if s["step"] == "offer")
    # m1 within, m2 above north's max, m3 below the min, EVIL too few sessions (6 < 20)
    assert (offer["managers"], offer["enough"], offer["above"], offer["below"], offer["outside"],
            offer["flagged"]) == (4, 3, 1, 1, 2, 2)
    assert (offer["band_reference_ms"], offer["overrides"]) == (120_000, 1)
    html = await (await api.get("/steps?site=crm")).text()
    assert "<h1>Steps</h1>" in html and f"{EVIL_TITLE}" not in html and "Offer &lt;script&gt;" in html
    csv = await (await api.get("/steps?site=crm&format=csv")).text()
    assert csv.splitlines()[0] == ("step,title,band_min_ms,band_reference_ms,band_max_ms,overrides,managers,enough,"
                                   "above,below,outside,flagged")


async def test_a_director_counts_only_the_teams_they_lead(api: Any) -> None:
    await login(api, "dora")
    offer = next(s for s in (await (await api.get("/api/v1/steps")).json())["steps"] if s["step"] == "offer")
    assert (offer["managers"], offer["above"], offer["below"]) == (2, 1, 0)  # m1 and m2 of north
    api.session.cookie_jar.clear()
    await login(api, "tom")
    offer = next(s for s in (await (await api.get("/api/v1/steps")).json())["steps"] if s["step"] == "offer")
    assert (offer["managers"], offer["above"]) == (1, 1)  # a trainer sees whom they mentor: m2


# --- one step --------------------------------------------------------------------------------------------------


async def test_a_steps_page_shows_every_visible_manager_against_their_band(api: Any) -> None:
    await login(api, "ada")
    data = await (await api.get("/api/v1/steps/offer?site=crm")).json()
    rows = {m["manager"]: m for m in data["managers"]}
    assert set(rows) == {"m1", "m2", "m3", EVIL}
    assert rows["m1"]["band_team"] == "north" and rows["m1"]["band_max_ms"] == 300_000
    assert rows["m3"]["band_max_ms"] == 240_000 and rows["m3"]["position"] == "below"
    assert rows[EVIL]["band_max_ms"] == 240_000 and rows[EVIL]["team"] == ""  # no team: the default band
    times = [t for i, t in enumerate(spread(40_000, 56)) if i % 28 < 14]
    assert rows["m3"]["median_ms"] == pytest.approx(np.percentile(times, 50))
    assert rows["m3"]["share_below_min"] == 1.0 and rows["m3"]["status"] == "fast" and rows["m3"]["flag_id"]
    assert sum(b["sessions"] for b in data["histogram"]) == sum(m["n"] for m in data["managers"])
    assert data["band"]["reference_ms"] == 120_000
    assert [(b["team"], b["reference_ms"]) for b in data["team_bands"]] == [("north", 150_000)]
    assert [(h["team"], h["reason"]) for h in data["history"]] == [("north", "north works differently"),
                                                                   ("", "pilot")]
    assert data["editable_teams"] == ["", "north", "south"]
    assert data["suggestion"] is None and not data["suggested"]  # asked for with ?suggest=1
    asked = await (await api.get("/api/v1/steps/offer?site=crm&suggest=1")).json()
    assert asked["suggested"] and asked["suggestion"]["n"] == 174 and asked["suggestion"]["managers"] == 4
    needs = await (await api.get("/api/v1/steps/needs?site=crm")).json()
    assert [(m["manager"], m["visits_imported"]) for m in needs["managers"]] == [("m1", 10)]
    html = await (await api.get("/steps/offer?site=crm")).text()
    for svg in SVG.findall(html):
        ET.fromstring(svg)
    assert len(SVG.findall(html)) == 4  # the histogram and one box chart per team (none, north, south)
    assert "north works differently" in html and 'action="/steps/offer/bands' in html
    csv = (await (await api.get("/steps/offer?site=crm&format=csv")).text()).splitlines()
    assert csv[0].startswith("manager,team,n,p10_ms") and len(csv) == 5
    history = (await (await api.get("/steps/offer?site=crm&format=csv&table=history")).text()).splitlines()
    assert history[0] == "effective_from,team,stratum,min_ms,reference_ms,max_ms,set_at,set_by,reason"
    assert history[1].startswith(f"{(TODAY - timedelta(days=20)).isoformat()},north,,60000,150000,300000,")


@pytest.mark.parametrize(("name", "status", "managers"), [
    ("ada", 200, {"m1", "m2", "m3", EVIL}), ("dora", 200, {"m1", "m2"}), ("tom", 200, {"m2"}),
    ("max", 403, None), ("sam", 403, None)])
async def test_who_sees_a_step_and_whom_on_it(api: Any, name: str, status: int, managers: set[str] | None) -> None:
    await login(api, name)
    for path in ("/steps?site=crm", "/steps/offer?site=crm"):
        page = await api.get(path, allow_redirects=False)
        twin = await api.get("/api/v1" + path)
        assert page.status == twin.status == status, path
    if status == 403:
        assert (await twin.json())["error"] == "the manager role may not open this"
        return
    data = await twin.json()
    assert {m["manager"] for m in data["managers"]} == managers
    html = await page.text()
    assert ('action="/steps/offer/bands' in html) == (name in ("ada", "dora"))  # the editor, only to editors
    if name == "dora":
        assert data["editable_teams"] == ["north"]


async def test_anonymous_step_pages_and_actions(api: Any) -> None:
    for path in ("/steps", "/steps/offer"):
        assert (await api.get(path, allow_redirects=False)).status == 303
        assert (await api.get("/api/v1" + path)).status == 401
    assert (await api.post("/steps/offer/bands", data={}, allow_redirects=False)).headers["Location"] == "/login"
    assert (await api.post("/api/v1/steps/offer/bands", json={})).status == 401


async def test_an_unknown_step_is_404_and_its_name_escaped(api: Any) -> None:
    await login(api, "ada")
    page = await api.get("/steps/%3Cscript%3Ealert(1)%3C%2Fscript%3E?site=crm")
    html = await page.text()
    assert page.status == 404 and "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert (await api.get("/api/v1/steps/nope?site=crm")).status == 404


async def test_a_script_in_a_manager_id_is_escaped_on_the_step_page(api: Any) -> None:
    await login(api, "ada")
    html = await (await api.get("/steps/offer?site=crm")).text()
    assert "<script>alert" not in html
    assert f'href="/managers/{"%3Cscript%3Ealert%281%29%3C%2Fscript%3E"}?site=crm"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</span></a>" in html  # the table (no name: the id)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: 6 sessions" in html  # the box chart's tooltip


def _suggested_by_the_cli(client: storage.Client, since: date, until: date) -> Any:
    """What `stepwatch bands suggest` computes for the offer step from the same sessions."""
    pairs = [p for p in storage.session_step_times(client, "crm", since, until + timedelta(days=1))
             if p.step == "offer"]
    times = np.concatenate([p.times_ms for p in pairs])
    owners = np.concatenate([np.full(p.times_ms.size, p.manager) for p in pairs])
    return suggest_band(times, managers=owners)


def test_the_suggestion_is_the_one_the_cli_computes(shared: tuple[Settings, storage.Client]) -> None:
    settings, client = shared
    since, until = TODAY - timedelta(days=29), TODAY
    expected = _suggested_by_the_cli(client, since, until)
    found = figures.suggested_band(client, "crm", "offer", since, until)
    assert found is not None
    assert (found.min_ms, found.reference_ms, found.max_ms) == (
        expected.band.min_ms, expected.band.reference_ms, expected.band.max_ms)
    assert (found.n, found.managers) == (expected.n, expected.managers) == (174, 4)
    director = figures.suggested_band(client, "crm", "offer", since, until, managers={"m1", "m2"})
    assert director is not None and director.managers == 2
    assert figures.suggested_band(client, "crm", "offer", since, until, managers={EVIL}) is None  # 6 < 20


def test_a_steps_figures_from_pair_days_are_those_of_its_sessions(client: storage.Client, settings: Settings,
                                                                   site: sites.Site,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The figures by manager (a step's page) read pair_days, a day's session times as arrays; by
    step (a manager's page) they read session_steps, a row per session. Both give the same numbers
    in every grouping, and a day's older refresh, still waiting for its delete, counts in neither."""
    build(client, settings, analyze=False)
    day = TODAY - timedelta(days=3)
    client.command(  # an older refresh of one day, ten times slower, as if its delete had not run yet
        "INSERT INTO session_steps (site, day, manager, step, session_id, visible_ms, active_ms, wall_ms, computed_at) "
        "SELECT site, day, manager, step, session_id, visible_ms * 10, active_ms * 10, wall_ms * 10, "
        "computed_at - INTERVAL 1 HOUR FROM session_steps WHERE site = 'crm' AND day = {day:Date}",
        parameters={"day": day})
    monday = TODAY - timedelta(days=TODAY.weekday())
    ask = {"key": "manager", "step": "offer", "since": TODAY - timedelta(days=13), "until": TODAY,
           "trend_since": monday - timedelta(weeks=5), "limits": {"m1": (60_000, 300_000)},
           "default_limits": (60_000, 240_000)}

    def both(**changes: Any) -> tuple[figures.Figures, figures.Figures]:
        from_arrays = figures.distributions(client, "crm", **{**ask, **changes})
        with monkeypatch.context() as patch:
            patch.setattr(figures, "_pair_days_figures", figures._session_figures)
            return from_arrays, figures.distributions(client, "crm", **{**ask, **changes})

    for changes in ({}, {"detail": False}, {"trend_since": None, "detail": False}, {"managers": {"m1", "m3"}}):
        from_arrays, from_sessions = both(**changes)
        assert from_arrays == from_sessions, changes
    found, _ = both()
    assert set(found.by_key) == {"m1", "m2", "m3", EVIL} and found.by_key["m1"].n == 28
    assert found.by_key["m3"].below_min == 28 and found.by_key["m1"].above_max == 0
    assert len(found.weeks_by_key["m1"]) == 5  # the weeks of its four weeks of sessions


# --- the band editor -------------------------------------------------------------------------------------------


async def test_an_admin_changes_a_band_with_a_reason_and_it_is_audited(fresh: Any, client: storage.Client) -> None:
    await login(fresh, "ada")
    page = await (await fresh.get("/steps/offer?site=crm")).text()
    assert 'value="1m"' in page and 'value="2m"' in page and 'value="4m"' in page  # the band in force, as text
    response = await fresh.post("/steps/offer/bands", allow_redirects=False, data={
        "csrf": csrf_of(page), "site": "crm", "min": "45s", "reference": "2m30s", "max": "5m", "team": "",
        "effective_from": TODAY.isoformat(), "reason": "new CRM offer screen", "next": "/steps/offer?site=crm"})
    assert response.status == 303 and response.headers["Location"] == "/steps/offer?site=crm"
    latest = newest(client, "offer")
    assert (latest.team, latest.min_ms, latest.reference_ms, latest.max_ms, latest.set_by, latest.reason) == (
        "", 45_000, 150_000, 300_000, "ada", "new CRM offer screen")
    (entry,) = audit.entries(client, action="band.set", actor="ada")
    assert entry.object == "crm/offer" and entry.reason == "new CRM offer screen"
    assert entry.details["before"]["reference_ms"] == 120_000 and entry.details["after"]["reference_ms"] == 150_000
    after = await (await fresh.get("/steps/offer?site=crm")).text()
    assert f"Band of {html.escape(EVIL_TITLE)} saved for every team" in after and "new CRM offer screen" in after


async def test_the_band_form_needs_its_csrf_token(api: Any, shared: tuple[Settings, storage.Client]) -> None:
    client = shared[1]
    await login(api, "ada")
    before = len(band_versions.versions(client, "crm", "offer"))
    fields = {"site": "crm", "min": "1m", "reference": "2m", "max": "4m", "reason": "forged"}
    assert (await api.post("/steps/offer/bands", data=fields, allow_redirects=False)).status == 403
    forged = await api.post("/steps/offer/bands", data={**fields, "csrf": "not-the-token"}, allow_redirects=False)
    assert forged.status == 403
    cookie_api = await api.post("/api/v1/steps/offer/bands", json=fields)  # a cookie login, no X-CSRF-Token
    assert cookie_api.status == 403
    assert len(band_versions.versions(client, "crm", "offer")) == before


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"min": "5m", "reference": "2m", "max": "6m"}, "min",
     "The minimum (5.0 min) must be at most the reference (2.0 min)."),
    ({"min": "1m", "reference": "7m", "max": "6m"}, "reference",
     "The reference (7.0 min) must be at most the maximum (6.0 min)."),
    ({"min": "0", "reference": "2m", "max": "6m"}, "min", "Minimum must be more than 0"),
    ({"min": "1m", "reference": "two minutes", "max": "6m"}, "reference",
     "Reference: “two minutes” is not a duration"),
    ({"min": "1m", "reference": "2m", "max": ""}, "max", "Maximum is required"),
    ({"min": "1m", "reference": "2m", "max": "6m", "reason": "  "}, "reason", "A band change needs a reason"),
    ({"min": "1m", "reference": "2m", "max": "6m", "team": "west"}, "team", "There is no team “west” on site crm."),
    ({"min": "1m", "reference": "2m", "max": "6m", "effective_from": "soon"}, "effective_from",
     "The date must look like 2026-11-23."),
])
async def test_an_inconsistent_band_is_refused_next_to_its_field_keeping_what_was_typed(
        api: Any, shared: tuple[Settings, storage.Client], fields: dict[str, str], field: str, words: str) -> None:
    client = shared[1]
    await login(api, "ada")
    before = len(band_versions.versions(client, "crm", "offer"))
    page = await (await api.get("/steps/offer?site=crm")).text()
    posted = {"csrf": csrf_of(page), "site": "crm", "reason": "tighter", "next": "/steps/offer?site=crm", **fields}
    response = await api.post("/steps/offer/bands", data=posted, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/steps/offer?site=crm"
    shown = await (await api.get(response.headers["Location"])).text()
    error = re.search(rf'<p class="field-error" id="error-{field}" role="alert">([^<]*)</p>', shown)
    assert error is not None and words in error.group(1).replace("&#39;", "'").replace("\xa0", " ")
    assert 'aria-invalid="true"' in shown
    if field in ("min", "reference", "max"):
        assert f'value="{fields[field]}"' in shown  # what was typed stays in the form
    assert len(band_versions.versions(client, "crm", "offer")) == before


async def test_a_director_sets_only_overrides_of_the_teams_they_lead(fresh: Any, client: storage.Client) -> None:
    await login(fresh, "dora")
    page = await (await fresh.get("/steps/offer?site=crm")).text()
    assert '<option value="north"' in page and '<option value=""' not in page and '"south"' not in page
    base = {"csrf": csrf_of(page), "site": "crm", "min": "1m", "reference": "2m", "max": "5m", "reason": "coached"}
    ok = await fresh.post("/steps/offer/bands", data={**base, "team": "north"}, allow_redirects=False)
    assert ok.status == 303
    assert newest(client, "offer").team == "north"
    for team in ("", "south"):
        refused = await fresh.post("/steps/offer/bands", data={**base, "team": team}, allow_redirects=False)
        assert refused.status == 403 and "teams they lead (north)" in await refused.text()
    assert [v.team for v in band_versions.versions(client, "crm", "offer")].count("south") == 0


@pytest.mark.parametrize("name", ["tom", "max"])
async def test_trainers_and_managers_may_not_change_bands(api: Any, shared: tuple[Settings, storage.Client],
                                                         name: str) -> None:
    client = shared[1]
    await login(api, name)
    csrf = csrf_of(await (await api.get("/me" if name == "max" else "/steps")).text())
    response = await api.post("/steps/offer/bands", allow_redirects=False, data={
        "csrf": csrf, "site": "crm", "min": "1m", "reference": "2m", "max": "5m", "team": "north", "reason": "x"})
    assert response.status == 403
    token = users.create_token(client, name, "script", actor="test")
    api_answer = await api.post("/api/v1/steps/offer/bands", headers={"Authorization": f"Bearer {token}"},
                                json={"site": "crm", "min_ms": 1, "reference_ms": 2, "max_ms": 3, "reason": "x"})
    assert api_answer.status == 403 and f"the {'trainer' if name == 'tom' else 'manager'} role" in (
        await api_answer.json())["error"]


async def test_the_json_api_sets_bands_for_scripts_with_a_token(fresh: Any, client: storage.Client) -> None:
    token = users.create_token(client, "ada", "bands script", actor="test")
    headers = {"Authorization": f"Bearer {token}"}
    ok = await fresh.post("/api/v1/steps/needs/bands", headers=headers, json={
        "site": "crm", "min_ms": 90_000, "reference_ms": 180_000, "max_ms": 360_000, "team": "south",
        "effective_from": (TODAY + timedelta(days=7)).isoformat(), "reason": "south's needs step is shorter"})
    body = await ok.json()
    assert ok.status == 200, body
    assert {k: body[k] for k in ("site", "step", "team", "min_ms", "reference_ms", "max_ms", "effective_from")} == {
        "site": "crm", "step": "needs", "team": "south", "min_ms": 90_000, "reference_ms": 180_000,
        "max_ms": 360_000, "effective_from": (TODAY + timedelta(days=7)).isoformat()}
    assert "redirect" not in body
    stored = newest(client, "needs")
    assert (stored.team, stored.reference_ms, stored.set_by) == ("south", 180_000, "ada")
    durations = await fresh.post("/api/v1/steps/needs/bands", headers=headers, json={
        "site": "crm", "min": "1m", "reference": 150, "max": "4m30s", "reason": "durations as text"})
    assert durations.status == 200 and (await durations.json())["reference_ms"] == 150_000


@pytest.mark.parametrize(("body", "field"), [
    ({"min_ms": 300_000, "reference_ms": 120_000, "max_ms": 400_000}, "min_ms"),
    ({"min_ms": 60_000, "reference_ms": 120_000, "max_ms": 100_000}, "reference_ms"),
    ({"min_ms": "60000", "reference_ms": 120_000, "max_ms": 400_000}, "min_ms"),
    ({"min": "a minute", "reference": "2m", "max": "4m"}, "min"),
    ({"min_ms": 60_000, "reference_ms": 120_000, "max_ms": 400_000, "reason": ""}, "reason"),
    ({"min_ms": 60_000, "reference_ms": 120_000, "max_ms": 400_000, "team": "nobody"}, "team"),
])
async def test_the_json_api_answers_400_naming_the_field(api: Any, shared: tuple[Settings, storage.Client],
                                                          body: dict[str, Any], field: str) -> None:
    token = users.create_token(shared[1], "ada", "bands script", actor="test")
    response = await api.post("/api/v1/steps/offer/bands", headers={"Authorization": f"Bearer {token}"},
                              json={"site": "crm", "reason": "a test", **body})
    answer = await response.json()
    assert response.status == 400 and answer["field"] == field and answer["error"]


async def test_errors_speak_the_accounts_language(fresh: Any, client: storage.Client) -> None:
    users.set_language(client, "ada", "ru", actor="test")
    token = users.create_token(client, "ada", "bands script", actor="test")
    response = await fresh.post("/api/v1/steps/offer/bands", headers={"Authorization": f"Bearer {token}"},
                                json={"site": "crm", "min": "5m", "reference": "2m", "max": "6m", "reason": "r"})
    answer = await response.json()
    answer["error"] = answer["error"].replace("\xa0", " ")  # whatever space joins a figure to its unit
    assert response.status == 400 and answer == {"error": "Минимум (5,0 мин) не может быть больше эталона (2,0 мин).",
                                                 "field": "min"}


async def test_the_json_api_refuses_an_unknown_step_or_site(api: Any,
                                                            shared: tuple[Settings, storage.Client]) -> None:
    token = users.create_token(shared[1], "ada", "bands script", actor="test")
    headers = {"Authorization": f"Bearer {token}"}
    band = {"min_ms": 60_000, "reference_ms": 120_000, "max_ms": 240_000, "reason": "r"}
    assert (await api.post("/api/v1/steps/nope/bands", headers=headers, json={"site": "crm", **band})).status == 404
    assert (await api.post("/api/v1/steps/offer/bands", headers=headers,
                           json={"site": "elsewhere", **band})).status == 404


async def test_applying_the_suggestion_records_it_with_its_reason(fresh: Any, client: storage.Client) -> None:
    await login(fresh, "ada")
    data = await (await fresh.get("/api/v1/steps/offer?site=crm&suggest=1")).json()
    suggestion = data["suggestion"]
    plain = await (await fresh.get("/steps/offer?site=crm")).text()
    assert 'name="suggest" value="1"' in plain and 'value="suggestion"' not in plain  # a button asks for it
    page = await (await fresh.get("/steps/offer?site=crm&suggest=1")).text()
    form = re.search(r'<input type="hidden" name="form" value="suggestion">.*?</form>', page, re.S)
    assert form is not None and f'value="{duration_text(suggestion["reference_ms"])}"' in form.group(0)
    assert re.search(r'value="\d+ms"', form.group(0)) is None  # human units, not raw milliseconds
    response = await fresh.post("/steps/offer/bands", allow_redirects=False, data={
        "csrf": csrf_of(page), "site": "crm", "form": "suggestion", "min": f"{suggestion['min_ms']}ms",
        "reference": f"{suggestion['reference_ms']}ms", "max": f"{suggestion['max_ms']}ms", "team": "",
        "reason": "the pilot's practice", "next": "/steps/offer?site=crm&suggest=1"})
    assert response.status == 303
    latest = newest(client, "offer")
    assert (latest.min_ms, latest.reference_ms, latest.max_ms) == (
        suggestion["min_ms"], suggestion["reference_ms"], suggestion["max_ms"])
    assert audit.entries(client, action="band.set", actor="ada")[0].reason == "the pilot's practice"
    missing = await fresh.post("/steps/offer/bands", allow_redirects=False, data={
        "csrf": csrf_of(page), "site": "crm", "form": "suggestion", "min": "1m", "reference": "2m", "max": "4m",
        "reason": "", "next": "/steps/offer?site=crm&suggest=1"})
    assert missing.headers["Location"] == "/steps/offer?site=crm&suggest=1"
    shown = await (await fresh.get(missing.headers["Location"])).text()
    suggestion_form = shown[shown.index('name="form" value="suggestion"'):]
    assert 'id="error-reason"' in suggestion_form  # the error shows by the form that was sent


async def test_new_sessions_of_an_unbanded_manager_count_against_the_default(fresh: Any, client: storage.Client,
                                                                             settings: Settings) -> None:
    put(client, settings, "crm", sessions("m7", "offer", spread(500_000, 30), tag="late"))
    storage.refresh_session_steps(client, "crm")
    await login(fresh, "ada")
    rows = {m["manager"]: m for m in (await (await fresh.get("/api/v1/steps/offer?site=crm")).json())["managers"]}
    assert rows["m7"]["band_max_ms"] == 240_000 and rows["m7"]["position"] == "above"
    assert rows["m7"]["share_above_max"] == 1.0 and rows["m7"]["status"] is None  # not analysed yet


async def test_the_editor_shows_durations_in_words_and_states_that_every_team_is_the_default(api: Any) -> None:
    await login(api, "ada")
    html = await (await api.get("/steps/offer?site=crm")).text()
    editor = html[html.index('id="editor-heading"'):html.index('id="suggestion-heading"')]
    for name, shown in (("min", "1m"), ("reference", "2m"), ("max", "4m")):  # 60000 / 120000 / 240000 ms
        assert re.search(rf'name="{name}"[^>]*value="{shown}"', editor, re.S), name
    assert "60000" not in editor and "120000" not in editor
    selected = re.findall(r'<option value="([^"]*)" selected>([^<]*)</option>', editor)
    assert selected == [("", "Every team")]  # never a team override by default
    assert "Team north only" in editor and "“Every team” sets the default band" in editor
    assert "Teams with their own band keep it when the default changes: north." in editor
    api.session.cookie_jar.clear()
    await login(api, "dora")
    html = await (await api.get("/steps/offer?site=crm")).text()
    assert "You set the band of a team you lead" in html and "Every team</option>" not in html


async def test_the_editor_offers_a_suggested_bands_limits_as_a_person_types_them(fresh: Any,
                                                                                client: storage.Client) -> None:
    """A band in force from a suggestion has milliseconds; the editor shows whole seconds from 10 s and
    tenths below, never "1m7.596s" or a count of milliseconds."""
    band_versions.add_version(client, "crm", "offer", "", 37_518, 67_596, 122_135, TODAY, actor="ada", reason="ms")
    await login(fresh, "ada")
    html = await (await fresh.get("/steps/offer?site=crm")).text()
    assert 'value="38s"' in html and 'value="1m8s"' in html and 'value="2m2s"' in html
    assert "37.518s" not in html and "1m7.596s" not in html and "67596" not in html
    band_versions.add_version(client, "crm", "offer", "", 2_540, 4_000, 9_960, TODAY, actor="ada", reason="short")
    html = await (await fresh.get("/steps/offer?site=crm")).text()
    assert 'value="2.5s"' in html and 'value="4s"' in html and 'value="10s"' in html


async def test_the_editor_names_teams_by_their_titles(fresh: Any, client: storage.Client) -> None:
    teams.add_team(client, "crm", "east", "Восток", actor="ada", reason="titles")
    teams.assign(client, "crm", "east", ["m9"], actor="ada", reason="titles")
    await login(fresh, "ada")
    html = await (await fresh.get("/steps/offer?site=crm")).text()
    editor = html[html.index('id="editor-heading"'):html.index('id="history-heading"')]
    assert "Team Восток only" in editor and "Team east only" not in editor


async def test_a_preview_counts_medians_outside_the_new_band_and_saves_nothing(
        api: Any, shared: tuple[Settings, storage.Client]) -> None:
    """m1 (north, ~200 s) and m2 (north, ~400 s) keep north's band 60 s-300 s; m3 (south, ~40 s) is below the
    default 60 s-240 s; EVIL has too few sessions to judge. A default of 30 s-3 m brings m3 inside."""
    client = shared[1]
    await login(api, "ada")
    page = await (await api.get("/steps/offer?site=crm")).text()
    before = len(band_versions.versions(client, "crm", "offer"))
    response = await api.post("/steps/offer/bands?site=crm&suggest=1", allow_redirects=False, data={
        "csrf": csrf_of(page), "site": "crm", "form": "editor", "min": "30s", "reference": "2m", "max": "3m",
        "team": "", "effective_from": "", "reason": "", "preview": "1", "next": "/steps/offer?site=crm"})
    assert response.status == 303
    location = response.headers["Location"]
    assert location.startswith("/steps/offer?") and location.endswith("#preview")
    assert "suggest=1" in location and "min=30s" in location and "max=3m" in location
    assert len(band_versions.versions(client, "crm", "offer")) == before  # nothing saved, no reason needed
    html = await (await api.get(location)).text()
    shown = html[html.index('id="preview"'):]
    assert "Preview (not saved)" in shown and "Saved, this band would apply to every team" in shown
    assert "1 of the 3 managers with at least 20 sessions" in shown  # m3 gets it; north keeps its own band
    assert "Teams with their own band keep it when the default changes: north." in shown
    cells = re.findall(r'<td class="num">(?:<strong>)?(\d+)', shown)
    assert cells[:4] == ["1", "1", "1", "0"]  # above: now 1, new 1 (m2); below: now 1 (m3), new 0
    assert re.search(r'name="min"[^>]*value="30s"', html) and re.search(r'name="max"[^>]*value="3m"', html)
    # the JSON twins: the page's preview, and the action's preview for scripts
    twin = await (await api.get("/api/v1/steps/offer?site=crm&min=30s&reference=2m&max=3m")).json()
    assert {k: twin["preview"][k] for k in ("judged", "affected", "above_now", "above_new", "below_now",
                                            "below_new")} == {"judged": 3, "affected": 1, "above_now": 1,
                                                              "above_new": 1, "below_now": 1, "below_new": 0}
    token = users.create_token(client, "ada", "bands script", actor="test")
    answer = await (await api.post("/api/v1/steps/offer/bands", headers={"Authorization": f"Bearer {token}"},
                                     json={"site": "crm", "min": "1m", "reference": "3m", "max": "7m",
                                           "team": "north", "preview": True})).json()
    assert answer["saved"] is False and answer["preview"]["affected"] == 2  # m1 and m2
    assert (answer["preview"]["above_now"], answer["preview"]["above_new"]) == (1, 0)  # m2's ~400 s < 7 m
    assert answer["preview"]["teams_keeping_their_band"] == []
    assert len(band_versions.versions(client, "crm", "offer")) == before


async def test_a_preview_of_a_bad_value_names_the_field_in_the_viewers_language(fresh: Any,
                                                                                client: storage.Client) -> None:
    users.set_language(client, "ada", "ru", actor="test")
    await login(fresh, "ada")
    page = await (await fresh.get("/steps/offer?site=crm")).text()
    response = await fresh.post("/steps/offer/bands?site=crm", allow_redirects=False, data={
        "csrf": csrf_of(page), "site": "crm", "form": "editor", "min": "1m", "reference": "скоро", "max": "3m",
        "preview": "1", "next": "/steps/offer?site=crm"})
    shown = await (await fresh.get(response.headers["Location"])).text()
    error = re.search(r'<p class="field-error" id="error-reference" role="alert">([^<]*)</p>', shown)
    assert error is not None and error.group(1).startswith("Эталон:")
    typed = await fresh.get("/steps/offer?site=crm&min=5m&reference=2m&max=3m")  # a hand-made link
    assert typed.status == 400 and "Минимум (5,0 мин) не может быть больше эталона" in (await typed.text()).replace(
        "\xa0", " ")
    west = await fresh.get("/steps/offer?site=crm&min=1m&reference=2m&max=3m&team=west")
    assert west.status == 400 and "нет команды «west»" in await west.text()
    fresh.session.cookie_jar.clear()
    await login(fresh, "dora")  # a director previews only the teams they lead, as they save
    assert (await fresh.get("/steps/offer?site=crm&min=1m&reference=2m&max=3m&team=")).status == 403
    assert (await fresh.get("/steps/offer?site=crm&min=1m&reference=2m&max=3m&team=north")).status == 200


async def test_the_suggestion_shows_its_interval_and_copies_into_the_editor(
        api: Any, shared: tuple[Settings, storage.Client]) -> None:
    client = shared[1]
    since, until = TODAY - timedelta(days=29), TODAY
    expected = _suggested_by_the_cli(client, since, until)
    assert expected.reference_ci_ms is not None
    found = reference_interval(client, "crm", "offer", since, until, metric="visible", managers=None,
                               reference_ms=expected.band.reference_ms)
    assert found is not None
    for ours, cli in zip(found, expected.reference_ci_ms, strict=True):
        assert ours == pytest.approx(cli, rel=0.025)  # within a bin (2.2%) of the CLI's resampling
    assert reference_interval(client, "crm", "offer", since, until, metric="visible", managers={"m1"},
                              reference_ms=1) is None  # one manager: nothing to resample
    await login(api, "ada")
    data = await (await api.get("/api/v1/steps/offer?site=crm&suggest=1")).json()
    s = data["suggestion"]
    assert (s["reference_low_ms"], s["reference_high_ms"]) == found
    html = await (await api.get("/steps/offer?site=crm&suggest=1")).text()
    assert "95% interval of the reference:" in html
    link = re.search(r'<a id="copy-suggestion" href="([^"]+)"', html)
    assert link is not None
    copied = await (await api.get("/steps/offer" + link.group(1).replace("&amp;", "&"))).text()
    editor = copied[copied.index('id="editor-heading"'):copied.index('id="suggestion-heading"')]
    for name in ("min", "reference", "max"):
        seconds = round(s[name + "_ms"] / 1000)  # copied in whole seconds: "1m45s", not "1m44.837s"
        assert re.search(rf'name="{name}"[^>]*value="{duration_text(seconds * 1000)}"', editor, re.S), name
    assert "Preview (not saved)" in editor  # and its counts, before anything is saved


def test_durations_read_as_the_cli_reads_them() -> None:
    assert [parse_duration(v, "min") for v in ("90", "90s", "4m", "4m30s", "4 min", "1500ms", "1h", "2,5", 1.5)] == [
        90_000, 90_000, 240_000, 270_000, 240_000, 1_500, 3_600_000, 2_500, 1_500]
    for bad in ("", "soon", "4x", "-3", True):
        with pytest.raises(InvalidInput) as caught:
            parse_duration(bad, "max")
        assert caught.value.field == "max"
    for ms in (1_500, 45_000, 60_000, 270_000, 3_600_000, 61_234):
        assert parse_duration(duration_text(ms), "min") == ms
    assert (duration_text(61_234), duration_text(121_234), duration_text(45_500)) == ("1m1.234s", "2m1.234s", "45.5s")
    assert (duration_text(130_176, whole_seconds=True), duration_text(400, whole_seconds=True)) == ("2m10s", "0.4s")


# --- bands for one kind of client ----------------------------------------------------------------------------

KINDS = ('\n[attributes]\nsegment = ["vip", "regular"]\n\n[attribute_titles]\nsegment = "Client segment"\n\n'
         '[value_titles.segment]\nvip = "VIP"\nregular = "Regular"\n')


def declare_kinds(client: storage.Client) -> None:
    from kernel import processes
    from tests.figures_helpers import EXAMPLE

    text = EXAMPLE.read_text().replace('title = "Offer"', f'title = "{EVIL_TITLE}"') + KINDS
    processes.load(client, processes.parse(text, "crm"), actor="test")


async def test_a_band_for_one_kind_of_client_is_set_listed_and_audited(fresh: Any, client: storage.Client) -> None:
    declare_kinds(client)
    await login(fresh, "ada")
    page = await (await fresh.get("/steps/offer?site=crm")).text()
    kinds = re.search(r'<select id="band-stratum" name="stratum"[^>]*>(.*?)</select>', page, re.S)
    assert kinds is not None
    assert re.findall(r'<option value="([^"]*)"( selected)?>([^<]*)</option>', kinds.group(1)) == [
        ("", " selected", "Every kind"), ("segment=vip", "", "Client segment: VIP"),
        ("segment=regular", "", "Client segment: Regular")]  # every kind unless one is chosen
    assert "No kind of client has a band of its own" in page
    response = await fresh.post("/steps/offer/bands", allow_redirects=False, data={
        "csrf": csrf_of(page), "site": "crm", "min": "2m", "reference": "3m", "max": "6m", "team": "north",
        "stratum": "segment=vip", "effective_from": TODAY.isoformat(), "reason": "VIP clients ask more",
        "next": "/steps/offer?site=crm"})
    assert response.status == 303
    stored = band_versions.versions(client, "crm", "offer", stratum="segment=vip")
    assert [(v.team, v.stratum, v.reference_ms) for v in stored] == [("north", "segment=vip", 180_000)]
    assert newest(client, "offer").reason == "north works differently"  # the band for every kind is untouched
    (entry,) = audit.entries(client, action="band.set", actor="ada")
    assert entry.object == "crm/offer/north" and entry.details["stratum"] == "segment=vip"
    after = await (await fresh.get("/steps/offer?site=crm")).text()
    assert f"Band of {html.escape(EVIL_TITLE)} for Client segment: VIP saved for north from" in after
    kind_list = after[after.index('id="kind-bands-heading"'):after.index('id="managers-heading"')].replace("\xa0", " ")
    assert "Client segment: VIP · team north" in kind_list and "3.0 min" in kind_list
    history = after[after.index('id="history-heading"'):]
    assert "<td>north<br><span class=\"hint\">Client segment: VIP</span></td>" in history
    assert "<td>north</td>" in history  # a band for every kind names no kind
    twin = await (await fresh.get("/api/v1/steps/offer?site=crm")).json()
    assert [(k["stratum"], k["team"], k["reference_ms"]) for k in twin["kind_bands"]] == [
        ("segment=vip", "north", 180_000)]
    assert [k["stratum"] for k in twin["kinds"]] == ["segment=vip", "segment=regular"]
    assert [h["stratum"] for h in twin["history"]][:2] == ["segment=vip", ""]
    csv = (await (await fresh.get("/steps/offer?site=crm&format=csv&table=history")).text()).splitlines()
    assert csv[1].split(",")[1:3] == ["north", "segment=vip"]
    # for scripts: the answer carries the kind as stored
    token = users.create_token(client, "ada", "bands script", actor="test")
    answer = await (await fresh.post("/api/v1/steps/offer/bands", headers={"Authorization": f"Bearer {token}"},
                                     json={"site": "crm", "min": "2m", "reference": "4m", "max": "8m",
                                           "stratum": " segment=vip ", "reason": "every team's VIP band"})).json()
    assert answer["saved"] and answer["stratum"] == "segment=vip" and answer["team"] == ""


@pytest.mark.parametrize(("stratum", "declared", "words"), [
    ("segment=gold", True, "“segment=gold” is not a kind of client the process declares; choose one of: "
                           "Client segment: VIP, Client segment: Regular."),
    ("vip", True, "“vip” is not a kind of client the process declares"),
    ("segment=vip", False, "The process declares no kinds of client (session attributes)"),
])
async def test_a_kind_the_process_does_not_declare_is_refused_naming_the_field(
        fresh: Any, client: storage.Client, stratum: str, declared: bool, words: str) -> None:
    if declared:
        declare_kinds(client)
    token = users.create_token(client, "ada", "bands script", actor="test")
    response = await fresh.post("/api/v1/steps/offer/bands", headers={"Authorization": f"Bearer {token}"},
                                json={"site": "crm", "min": "1m", "reference": "2m", "max": "4m", "reason": "r",
                                      "stratum": stratum})
    answer = await response.json()
    assert response.status == 400 and answer["field"] == "stratum" and words in answer["error"]
    assert band_versions.versions(client, "crm", stratum=None) == band_versions.versions(client, "crm")
    if declared:  # on the page: next to the select, which keeps the band as typed
        await login(fresh, "ada")
        page = await (await fresh.get("/steps/offer?site=crm")).text()
        response = await fresh.post("/steps/offer/bands", allow_redirects=False, data={
            "csrf": csrf_of(page), "site": "crm", "form": "editor", "min": "1m", "reference": "2m", "max": "4m",
            "stratum": stratum, "reason": "r", "next": "/steps/offer?site=crm"})
        shown = await (await fresh.get(response.headers["Location"])).text()
        error = re.search(r'<p class="field-error" id="error-stratum" role="alert">([^<]*)</p>', shown)
        assert error is not None and html.escape(words) in error.group(1)
        assert re.search(r'<select id="band-stratum"[^>]*aria-invalid="true"', shown)


async def test_a_site_without_kinds_shows_no_kind_select(api: Any) -> None:
    await login(api, "ada")
    page = await (await api.get("/steps/offer?site=crm")).text()
    assert 'name="stratum"' not in page and "kind-bands-heading" not in page
    assert (await (await api.get("/api/v1/steps/offer?site=crm")).json())["kinds"] == []


async def test_a_preview_of_a_kind_band_says_how_its_sessions_will_be_weighed(fresh: Any,
                                                                            client: storage.Client) -> None:
    declare_kinds(client)
    await login(fresh, "ada")
    page = await (await fresh.get("/steps/offer?site=crm")).text()
    response = await fresh.post("/steps/offer/bands", allow_redirects=False, data={
        "csrf": csrf_of(page), "site": "crm", "form": "editor", "min": "1m", "reference": "3m", "max": "6m",
        "team": "", "stratum": "segment=vip", "preview": "1", "next": "/steps/offer?site=crm"})
    location = response.headers["Location"]
    assert "stratum=segment%3Dvip" in location
    shown = await (await fresh.get(location)).text()
    preview = shown[shown.index('id="preview"'):].replace("\xa0", " ")
    assert ("Saved, this band would apply to Client segment: VIP for every team from" in preview
            and "divided by 1.50 (3.0 min against 2.0 min for every kind)" in preview)
    assert re.search(r'<option value="segment=vip" selected>', shown)  # the kind previewed stays chosen
    twin = await (await fresh.get("/api/v1/steps/offer?site=crm&min=1m&reference=3m&max=6m&team=north"
                                  "&stratum=segment%3Dvip")).json()
    assert twin["preview"]["factor"] == 1.2 and twin["preview"]["every_kind_reference_ms"] == 150_000  # north's
    assert not band_versions.versions(client, "crm", stratum="segment=vip")


async def test_step_keys_stay_out_of_the_directors_headings(api: Any) -> None:
    """A director reads steps by their titles: the list shows no key beside them, and a step's page
    names its key (for the process file and the CLI) in the line under the heading, not in it."""
    await login(api, "ada")
    listed = await (await api.get("/steps?site=crm")).text()
    assert 'href="/steps/needs?site=crm">' in listed and "<code>needs</code>" not in listed
    page = await (await api.get("/steps/needs?site=crm")).text()
    heading = re.search(r"<h1>(.*?)</h1>", page, re.S)
    assert heading and "<code>" not in heading[1]
    assert "its key in the process and the command line: <code>needs</code>" in page


async def test_the_box_charts_call_managers_by_their_names(fresh: Any, client: storage.Client) -> None:
    from kernel import managers

    managers.set_manager(client, "crm", "m1", name="Анна Петрова", actor="ada")
    await login(fresh, "ada")
    html = await (await fresh.get("/steps/offer?site=crm")).text()
    boxes = "".join(SVG.findall(html)[1:])  # after the histogram, one box chart per team
    assert "Анна Петрова" in boxes and ">m1<" not in boxes and "m1:" not in boxes
