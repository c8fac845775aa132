"""The manager page and "My figures": figures computed in ClickHouse equal numpy's on the same sessions,
the JSON twin and CSV carry what the HTML shows, and nobody sees a manager outside their scope."""

from __future__ import annotations

import functools
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from markupsafe import escape

from dashboards.i18n import Translator
from dashboards.pages.coaching import signed_pct
from dashboards.pages.manager import period_of
from dashboards.web import JINJA
from kernel import flag_store, sites, storage, users
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.figures_helpers import EVIL, EVIL_TITLE, TODAY, built_store, spread
from tests.web_helpers import SECRET, login

SVG = re.compile(r"<svg .*?</svg>", re.S)


# One xdist worker runs this module: its module-scoped data is built once.
pytestmark = pytest.mark.xdist_group("test_dashboards_manager")


@pytest.fixture(scope="module")
def shared(engine_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, storage.Client]]:
    """One store for the read-only tests of this module: five accounts cost 2 s of Argon2id, so the
    data is built once (through the collector's checks, the pre-aggregate and a real analysis run)."""
    yield from built_store(engine_dir, tmp_path_factory.mktemp("spool"))


@pytest.fixture
async def api(aiohttp_client: Any, shared: tuple[Settings, storage.Client]) -> Any:
    return await aiohttp_client(create_app(shared[0]))


def window_times(center: int, count: int, days: int = 28, window: int = 14) -> list[int]:
    """The session times figures_helpers.sessions puts in the last `window` days."""
    return [t for i, t in enumerate(spread(center, count)) if i % days < window]


def svgs_are_well_formed(html: str) -> int:
    found = SVG.findall(html)
    for svg in found:
        ET.fromstring(svg)
    return len(found)


async def test_the_figures_are_the_numpy_figures_of_the_same_sessions(api: Any) -> None:
    await login(api, "ada")
    data = await (await api.get("/api/v1/managers/m2?site=crm")).json()
    assert data["manager"] == "m2" and data["team"] == "north"
    offer = next(s for s in data["steps"] if s["step"] == "offer")
    times = window_times(400_000, 56)
    assert offer["n"] == len(times) == 28
    for key, q in (("p10_ms", 10), ("p25_ms", 25), ("median_ms", 50), ("p75_ms", 75), ("p90_ms", 90)):
        assert offer[key] == pytest.approx(np.percentile(times, q)), key
    # north's override (max 300 s) is the band in force for m2, not the default (max 240 s)
    assert (offer["band_min_ms"], offer["band_reference_ms"], offer["band_max_ms"], offer["band_team"]) == (
        60_000, 150_000, 300_000, "north")
    assert offer["share_above_max"] == pytest.approx(np.mean(np.array(times) > 300_000))
    assert offer["position"] == "above" and offer["status"] == "slow" and offer["minutes_lost_per_week"] > 0
    # the histogram holds the window's sessions, each in the log bin that contains it
    assert sum(b["sessions"] for b in offer["histogram"]) == 28
    for t in times:
        assert sum(b["sessions"] for b in offer["histogram"] if b["from_ms"] <= t < b["to_ms"]) > 0
    # weekly medians: the week of today holds the sessions dated since its Monday
    monday = TODAY - timedelta(days=TODAY.weekday())
    this_week = [t for i, t in enumerate(spread(400_000, 56)) if TODAY - timedelta(days=i % 28) >= monday]
    last = offer["weekly"][-1]
    assert last["week"] == monday.isoformat() and last["sessions"] == len(this_week)
    assert last["median_ms"] == pytest.approx(np.percentile(this_week, 50))
    assert len(offer["weekly"]) == 12 and offer["weekly"][0]["band"]["team"] == ""  # before north's override


async def test_visits_tracked_and_imported_are_told_apart(api: Any) -> None:
    await login(api, "ada")
    data = await (await api.get("/api/v1/managers/m1?site=crm")).json()
    needs = next(s for s in data["steps"] if s["step"] == "needs")
    assert (needs["visits_tracked"], needs["visits_imported"]) == (16, 10)
    html = await (await api.get("/managers/m1?site=crm")).text()
    assert "10 of this window&#39;s visits were imported from an event log and 16 tracked live" in html
    assert "Visits tracked / imported</th>" in html
    # where nothing was imported the column would only say "/ 0" on every row: it is left out
    other = await (await api.get("/api/v1/managers/m2?site=crm")).json()
    assert not any(s["visits_imported"] for s in other["steps"])
    assert "Visits tracked / imported" not in await (await api.get("/managers/m2?site=crm")).text()


async def test_html_json_and_csv_carry_the_same_figures(api: Any) -> None:
    await login(api, "ada")
    data = await (await api.get("/api/v1/managers/m2?site=crm")).json()
    html = await (await api.get("/managers/m2?site=crm")).text()
    assert "<h1>Manager m2</h1>" in html
    offer = next(s for s in data["steps"] if s["step"] == "offer")
    row = re.search(r"<tr>\s*<th scope=\"row\"><a href=\"/steps/offer\?site=crm\">.*?</tr>", html, re.S)
    assert row is not None
    cells = re.sub(r"<[^>]+>", " ", row.group(0))
    assert "6.3\xa0min" in cells and "5.9\xa0min–7.0\xa0min" in cells and "100%" in cells and "slow" in cells
    assert f"{offer['n']}" in cells
    assert svgs_are_well_formed(html) == 3  # bullet, histogram and weekly of offer, m2's only step
    csv = await (await api.get("/managers/m2?site=crm&format=csv")).text()
    lines = csv.strip().splitlines()
    assert lines[0].startswith("step,title,n,p10_ms,p25_ms,median_ms")
    by_step = {line.split(",")[0]: line for line in lines[1:]}
    assert len(by_step) == len(data["steps"])
    assert f"offer,{EVIL_TITLE},28," in by_step["offer"]
    assert f",{offer['median_ms']}," in by_step["offer"]
    twin_csv = await (await api.get("/api/v1/managers/m2?site=crm&format=csv")).text()
    assert twin_csv == csv
    flags = (await (await api.get("/managers/m2?site=crm&format=csv&table=flags")).text()).splitlines()
    assert flags[0].startswith("flag_id,kind,step,team,status") and len(flags) == 2
    assert f"{data['flags'][0]['flag_id']},slow,offer,north,open," in flags[1]


async def test_flags_come_with_their_history(api: Any) -> None:
    await login(api, "ada")
    data = await (await api.get("/api/v1/managers/m2?site=crm")).json()
    (flag,) = data["flags"]
    assert (flag["kind"], flag["step"], flag["status"]) == ("slow", "offer", "open")
    assert [(h["from_status"], h["to_status"], h["actor"]) for h in flag["history"]] == [("", "open", "analysis")]
    html = await (await api.get("/managers/m2?site=crm")).text()
    assert "<summary>Status changes: 1</summary>" in html
    # the drawdown's own page, under the step's title (escaped)
    assert f'<a href="/drawdowns/{flag["flag_id"]}">{escape(EVIL_TITLE)}</a>' in html
    assert ('<span class="status">new</span> → <span class="status">open</span>, the analysis: '
            'The analysis found the drawdown.') in html


PAGE_ACCESS = [  # (account, manager asked for, expected status)
    ("ada", "m1", 200), ("ada", "m3", 200),
    ("dora", "m1", 200), ("dora", "m2", 200), ("dora", "m3", 403), ("dora", EVIL, 403),
    ("tom", "m2", 200), ("tom", "m1", 403),  # a trainer sees only the managers assigned to them (m2)
    ("max", "m1", 200), ("max", "m2", 403), ("max", "m3", 403),
    ("sam", "m3", 200), ("sam", "m1", 403),
]


@pytest.mark.parametrize(("name", "manager", "status"), PAGE_ACCESS)
async def test_who_may_see_which_manager(api: Any, name: str, manager: str, status: int) -> None:
    await login(api, name)
    path = f"/managers/{quote(manager, safe='')}?site=crm"
    page = await api.get(path, allow_redirects=False)
    twin = await api.get("/api/v1" + path)
    assert page.status == twin.status == status
    if status == 403:
        assert "outside what your account may see" in (await twin.json())["error"]
        words = {"sam": "Показатели этого менеджера недоступны"}.get(name, "outside what your account may see")
        assert words in await page.text()  # in the reader's language
        assert "Median" not in await page.text()  # no figure leaks into the refusal


async def test_anonymous_visitors_go_to_the_login_and_scripts_need_a_token(api: Any) -> None:
    for path in ("/managers/m1", "/me"):
        page = await api.get(path, allow_redirects=False)
        assert page.status == 303 and page.headers["Location"].startswith("/login?next=")
        assert (await api.get("/api/v1" + path)).status == 401


async def test_an_api_token_has_its_accounts_scope(api: Any, shared: tuple[Settings, storage.Client]) -> None:
    token = users.create_token(shared[1], "max", "script", actor="test")
    own = await api.get("/api/v1/managers/m1?site=crm", headers={"Authorization": f"Bearer {token}"})
    other = await api.get("/api/v1/managers/m2?site=crm", headers={"Authorization": f"Bearer {token}"})
    assert own.status == 200 and other.status == 403


async def test_an_unknown_manager_is_404_and_a_bad_window_400(api: Any) -> None:
    await login(api, "ada")
    assert (await api.get("/api/v1/managers/nobody?site=crm")).status == 404
    bad = await api.get("/api/v1/managers/m1?site=crm&since=2026-11-20&until=2026-11-01")
    assert bad.status == 400 and (await bad.json())["field"] == "since"
    assert (await api.get("/managers/m1?site=crm&until=yesterday")).status == 400
    assert (await api.get("/api/v1/managers/m1?site=nowhere")).status == 404


async def test_a_script_in_a_manager_id_or_step_title_is_only_ever_text(api: Any) -> None:
    await login(api, "ada")
    path = f"/managers/{quote(EVIL, safe='')}?site=crm"
    for page in (path, "/managers/m1?site=crm"):
        html = await (await api.get(page)).text()
        assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert svgs_are_well_formed(html)
    data = await (await api.get("/api/v1" + path)).json()
    assert data["manager"] == EVIL  # JSON carries the id as it is; it is not HTML
    csv = await (await api.get(path + "&format=csv")).text()
    assert EVIL_TITLE in csv


async def test_my_figures_are_the_managers_own_and_nobody_elses(api: Any) -> None:
    await login(api, "max")
    html = await (await api.get("/me?site=crm&manager=m2")).text()  # a manager parameter is ignored
    assert "<h1>My figures</h1>" in html and "as manager m1" in html
    assert svgs_are_well_formed(html) >= 6
    body = await (await api.get("/api/v1/me?site=crm&manager=m2")).text()
    data = await (await api.get("/api/v1/me?site=crm")).json()
    assert data["manager"] == "m1"
    assert "m2" not in body and "m3" not in body
    assert body.count(EVIL) == body.count(EVIL_TITLE)  # the manager EVIL never; only the offer step's title
    assert not any(f["manager"] not in ("", "m1") for f in data["flags"])
    mine = await (await api.get("/api/v1/managers/m1?site=crm")).json()
    assert data["steps"] == mine["steps"]  # the same figures as the manager page
    csv = await (await api.get("/me?site=crm&format=csv")).text()
    assert csv.splitlines()[0].startswith("step,title,n,")


@pytest.mark.parametrize("name", ["ada", "dora", "tom"])
async def test_my_figures_are_refused_to_other_roles_with_the_reason(api: Any, name: str) -> None:
    await login(api, name)
    page = await api.get("/me", allow_redirects=False)
    twin = await api.get("/api/v1/me")
    assert page.status == twin.status == 403
    role = {"ada": "admin", "dora": "director", "tom": "trainer"}[name]
    assert (await twin.json())["error"] == f"the {role} role may not open this"
    article = "an administrator's" if role == "admin" else f"a {role}'s"
    assert f"This page is not open to {article} account." in (await page.text()).replace("&#39;", "'")


async def test_my_figures_speak_the_accounts_language(api: Any) -> None:
    await login(api, "sam")
    html = await (await api.get("/me?site=crm")).text()
    assert 'lang="ru"' in html and "Мои показатели" in html and "Медиана" in html


async def test_a_new_manager_sees_an_empty_page_not_an_error(aiohttp_client: Any, settings: Settings,
                                                              client: storage.Client, site: sites.Site) -> None:
    users.add_user(client, "newbie", "manager", "correct horse battery", manager_id="m9", actor="test")
    api = await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))
    await login(api, "newbie")
    data = await (await api.get("/api/v1/me")).json()
    assert data["manager"] == "m9" and data["flags"] == [] and all(s["n"] == 0 for s in data["steps"])
    assert (await api.get("/me")).status == 200


async def test_a_systemic_flag_names_only_the_managers_the_viewer_may_see(
        api: Any, shared: tuple[Settings, storage.Client]) -> None:
    client = shared[1]
    now = datetime.now(UTC)
    flag = flag_store.StoredFlag(
        flag_id=str(uuid.uuid4()), site="crm", kind="systemic", team="north", step="needs", manager="",
        managers=("m1", "m2"), status="open", opened_at=now, updated_at=now, resolved_at=None,
        window_start=TODAY - timedelta(days=13), window_end=TODAY, n=40, median_ms=300_000.0, min_ms=100_000,
        reference_ms=200_000, max_ms=400_000, q_value=None, start_date=None, periods_in_drawdown=3,
        minutes_lost_per_week=50.0, severity=1, reasons=("most of the team is slow",), periods_without_condition=0,
        last_period=TODAY, version=0)
    flag_store.write(client, [flag])
    try:
        await login(api, "max")
        mine = await (await api.get("/api/v1/me?site=crm")).json()
        systemic = next(f for f in mine["flags"] if f["kind"] == "systemic")
        assert systemic["managers"] == ["m1"]  # not m2: a manager sees nobody else
        assert systemic["median_ms"] is systemic["n"] is systemic["minutes_lost_per_week"] is None  # team figures
        html = await (await api.get("/me?site=crm")).text()
        assert not re.search(r"\bm2\b", html)  # (a random CSRF token may hold the letters)
        api.session.cookie_jar.clear()
        await login(api, "dora")
        theirs = await (await api.get("/api/v1/managers/m1?site=crm")).json()
        systemic = next(f for f in theirs["flags"] if f["kind"] == "systemic")
        assert systemic["managers"] == ["m1", "m2"] and systemic["minutes_lost_per_week"] == 50.0
    finally:
        client.command("DELETE FROM flags WHERE flag_id = {id:UUID}", parameters={"id": flag.flag_id})


def test_the_window_defaults_to_the_analysis_window_and_the_trend_to_twelve_weeks() -> None:
    settings = Settings()
    period = period_of({}, settings, today=TODAY)
    assert (period.until - period.since).days == settings.analysis_window_days - 1
    assert period.trend_since.weekday() == 0 and (TODAY - period.trend_since).days < 12 * 7


async def test_a_shorter_window_names_the_median_the_analysis_judged(api: Any) -> None:
    # The flags, /overview and /drawdowns show the analysis' median (its window); a page on another window
    # shows its own sessions' median and, under it, the analysis' one in words, so the two never contradict.
    await login(api, "ada")
    whole = await (await api.get("/api/v1/managers/m2?site=crm")).json()
    offer = next(s for s in whole["steps"] if s["step"] == "offer")
    assert offer["analysis_median_ms"] == pytest.approx(offer["median_ms"]) and offer["like_for_like"] is False
    since = (TODAY - timedelta(days=1)).isoformat()
    short = await (await api.get(f"/api/v1/managers/m2?site=crm&since={since}")).json()
    offer = next(s for s in short["steps"] if s["step"] == "offer")
    assert offer["median_ms"] != pytest.approx(offer["analysis_median_ms"])
    html = await (await api.get(f"/managers/m2?site=crm&since={since}")).text()
    summary = html.split('id="summary-heading"', 1)[1].split("</section>", 1)[0]
    minutes = Translator("en").minutes(offer["analysis_median_ms"])
    assert f'<span class="judged-median">analysis: {minutes}</span>' in summary, summary
    assert "the median the analysis judged, the one the drawdowns and the overview show" in summary
    assert ">Median judged</th>" in html  # the flags' column: the same figure as on /drawdowns


def test_a_coaching_effect_is_a_whole_signed_percent_as_on_the_coaching_pages(
        shared: tuple[Settings, storage.Client]) -> None:
    env = create_app(shared[0])[JINJA]
    template = env.from_string('{% from "_coaching_history.html" import coaching_history with context %}'
                               "{{ coaching_history(rows, {}) }}")
    row = {"assignment_id": "a1", "step_title": "Closing", "kind": "mentor_meeting", "course_id": None,
           "state": "evaluated", "due": TODAY, "verdict": "improved", "relative_effect_pct": -45.5,
           "before_after": None}
    for language in ("en", "ru"):
        _ = Translator(language)
        said = "−" + _.pct(0.46)  # "−46%", "−46 %"
        html = template.render(_=_, signed=functools.partial(signed_pct, _), rows=[row])
        assert f'<td class="num">{said}</td>' in html and "-45" not in html


async def test_a_manager_without_drawdowns_gets_one_sentence_not_an_empty_table(api: Any) -> None:
    await login(api, "ada")
    data = await (await api.get("/api/v1/managers/m1?site=crm")).json()
    assert data["flags"] == []
    flags = (await (await api.get("/managers/m1?site=crm")).text()).split('id="flags-heading"', 1)[1]
    flags = flags.split("</section>", 1)[0]
    assert "<table" not in flags and "table=flags" not in flags and flags.count("No drawdowns.") == 1


async def test_one_coaching_assignment_is_said_in_the_singular(api: Any) -> None:
    await login(api, "ada")
    html = await (await api.get("/managers/m2?site=crm")).text()
    history = html.split('id="coaching-heading"', 1)[1].split("</section>", 1)[0]
    assert "<caption>1 coaching assignment</caption>" in history


async def test_an_undated_drawdown_says_when_it_was_flagged_as_the_overview_does(
        api: Any, shared: tuple[Settings, storage.Client]) -> None:
    """A drawdown whose start is not dated reads "flagged on Dec 3, 2026" on the manager's page and on
    My figures, as on the overview and the drawdowns list, not a bare dash."""
    client = shared[1]
    opened = datetime.now(UTC) - timedelta(days=2)
    flag = flag_store.StoredFlag(
        flag_id=str(uuid.uuid4()), site="crm", kind="slow", team="north", step="needs", manager="m1", managers=(),
        status="open", opened_at=opened, updated_at=opened, resolved_at=None,
        window_start=TODAY - timedelta(days=13), window_end=TODAY, n=40, median_ms=300_000.0, min_ms=100_000,
        reference_ms=200_000, max_ms=400_000, q_value=None, start_date=None, periods_in_drawdown=1,
        minutes_lost_per_week=20.0, severity=1, reasons=("median above the maximum of the band",),
        periods_without_condition=0, last_period=TODAY, version=0)
    flag_store.write(client, [flag])
    said = f"flagged on {opened:%b} {opened.day}, {opened.year}"
    try:
        await login(api, "dora")
        page = await (await api.get("/managers/m1?site=crm")).text()
        row = page[page.index(f'href="/drawdowns/{flag.flag_id}"'):].split("</tr>", 1)[0]
        assert said in row and "<td>–</td>" not in row
        api.session.cookie_jar.clear()
        await login(api, "max")
        assert said in await (await api.get("/me?site=crm")).text()
    finally:
        client.command("DELETE FROM flags WHERE flag_id = {id:UUID}", parameters={"id": flag.flag_id})
