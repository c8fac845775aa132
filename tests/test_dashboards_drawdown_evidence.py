"""One drawdown's page decides: the evidence chart of weekly medians against the band and the team,
the sentence under it, the confidence in words, the statistics behind a disclosure, one primary
action, and the JSON twin's evidence, onset, confidence and explanation. On the real engine: the
weekly medians are read from the daily pre-aggregate, the teammates from the latest run's rows."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from markupsafe import escape

import coaching
from coaching.lifecycle import Target
from kernel import band_versions, flag_store, managers, storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.coaching_helpers import add_sessions, build_org, today
from tests.coaching_helpers import sign_in as login
from tests.dashboard_data import drawdown_page, make_flag, stats_row, store_pair_stats
from tests.web_helpers import SECRET

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BAND = (60_000, 120_000, 240_000)  # the offer: 1 to 4 minutes, reference 2
LAST_MONDAY = today() - timedelta(days=today().weekday())
ONSET = LAST_MONDAY - timedelta(weeks=3)


def visible_text(html: str) -> str:
    """The words a reader sees: the page without its tags, scripts' and links' addresses."""
    body = html.split("<main", 1)[-1]
    return re.sub(r"<[^>]+>", " ", body)


@pytest.fixture
def org(client: storage.Client, site: Any) -> Any:
    made = build_org(client, site.name)
    band_versions.add_version(client, "crm", "offer", "", *BAND, today() - timedelta(days=200), actor="test",
                              reason="test band")
    # m-1 on the offer: 2 minutes until the onset, then 5; m-2..m-4 steady at 2, 2.2 and 1.8 minutes
    add_sessions(client, "crm", "m-1", today() - timedelta(weeks=10), ONSET - timedelta(days=1), 120, seed=1)
    add_sessions(client, "crm", "m-1", ONSET, today() - timedelta(days=1), 300, seed=2)
    for i, (manager, seconds) in enumerate((("m-2", 120), ("m-3", 132), ("m-4", 108))):
        add_sessions(client, "crm", manager, today() - timedelta(weeks=10), today() - timedelta(days=1), seconds,
                     seed=10 + i)
    storage.refresh_session_steps(client, "crm")
    managers.set_manager(client, "crm", "m-1", name="Анна Петрова", actor="test")
    return made


def run_rows(median_m1: float, *, peers: dict[str, int] | None = None, status: str = "slow") -> list[dict[str, Any]]:
    rows = [stats_row("crm", "north", m, "offer", median, n=60) for m, median in
            (("m-1", median_m1), ("m-2", 120_000), ("m-3", 132_000), ("m-4", 108_000))]
    rows[0].update(status=status, minutes_lost_per_week=44.0, p25_ms=median_m1 * 0.9, p75_ms=median_m1 * 1.1)
    if peers is not None:
        rows[0]["peers"] = peers
    return rows


def slow_flag(client: storage.Client, *, median_ms: float = 300_000, q_value: float | None = 0.0004,
              at_least: bool = False, start: date | None = ONSET, periods: int = 3, n: int = 60,
              kind: str = "slow", manager: str = "m-1", managers_: tuple[str, ...] = ()) -> flag_store.StoredFlag:
    flag = make_flag(client, "crm", kind=kind, manager=manager, managers=managers_ or (manager,), step="offer",
                     team="north", minutes_lost=44.0, median_ms=median_ms)
    changed = replace(flag, q_value=q_value, start_date=start, start_at_least=at_least, periods_in_drawdown=periods,
                      n=n, version=flag.version + 1)
    flag_store.write(client, [changed])
    return changed


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, org: Any) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


async def test_the_evidence_is_the_weekly_medians_against_the_band_and_the_rest_of_the_team(
        api: Any, client: storage.Client) -> None:
    store_pair_stats(client, "crm", run_rows(300_000), today() - timedelta(days=13), today())
    flag = slow_flag(client)
    await login(api, "dana")
    data, html = await drawdown_page(api, flag)
    weeks = data["evidence"]["weeks"]
    assert len(weeks) == 12 and weeks[-1]["week"] == LAST_MONDAY.isoformat()
    assert all(date.fromisoformat(w["week"]).weekday() == 0 for w in weeks)
    by_week = {w["week"]: w for w in weeks}
    before, after = by_week[(ONSET - timedelta(weeks=2)).isoformat()], by_week[(ONSET + timedelta(weeks=1)).isoformat()]
    assert 100_000 < before["manager_median_ms"] < 140_000 and 260_000 < after["manager_median_ms"] < 340_000
    # the team's median is the other managers' (about 2 minutes), not pulled up by m-1
    assert 100_000 < after["team_median_ms"] < 140_000
    assert after["band"] == {"min_ms": 60_000, "reference_ms": 120_000, "max_ms": 240_000} and after["n"] == 30
    assert data["onset"] == {"date": ONSET.isoformat(), "at_least": False}
    # the chart: an accessible SVG with the onset marked, and its figures as a table
    assert html.count('class="chart evidence"') == 2  # a wide and a narrow drawing, one shown by the stylesheet
    assert 'role="img"' in html and "<title>Анна Петрова on Offer: weekly medians over" in html
    assert f"since about {ONSET.day} " in html and "rest of the team" in html
    shown = [w for w in weeks if w["team_median_ms"] is not None]
    assert 0 < len(shown) < 12  # the table leaves out the weeks before the first session
    assert f"<caption>Weekly medians, {len(shown)} weeks</caption>" in html
    assert '<link rel="stylesheet" href="/static/drawdown.css">' in html
    assert (await api.get("/static/drawdown.css")).status == 200


async def test_the_sentence_says_since_when_who_how_far_and_how_much(api: Any, client: storage.Client) -> None:
    store_pair_stats(client, "crm", run_rows(300_000), today() - timedelta(days=13), today())
    flag = slow_flag(client)
    await login(api, "dana")
    data, html = await drawdown_page(api, flag)
    onset = f"{ONSET:%b} {ONSET.day}, {ONSET.year}"
    expected = (f"Since about {onset}, Анна Петрова's median on Offer is 5.0\xa0min, 25% above the maximum and slower "
                "than 3 of 3 teammates, in 3 of the last 4 weeks; time lost against the reference: "
                "about 44\xa0min a week.")
    assert data["explanation"] == expected and data["peers"] == {"slower_than": 3, "of": 3}
    assert str(escape(expected)) in html
    # the analysis' own peers when its run has them
    store_pair_stats(client, "crm", run_rows(300_000, peers={"slower_than": 5, "of": 6}), today(), today())
    data, _ = await drawdown_page(api, flag)
    assert "slower than 5 of 6 teammates" in data["explanation"]


async def test_the_sentence_in_russian_and_its_variants(api: Any, client: storage.Client) -> None:
    store_pair_stats(client, "crm", run_rows(200_000), today() - timedelta(days=13), today())
    inside = slow_flag(client, median_ms=200_000, at_least=True)
    undated = slow_flag(client, start=None)
    fast = slow_flag(client, kind="fast", median_ms=30_000)
    systemic = slow_flag(client, kind="systemic", manager="", managers_=("m-1", "m-3"), median_ms=150_000)
    await login(api, "dana")
    said = {k: (await drawdown_page(api, f))[0]["explanation"] for k, f in
            (("inside", inside), ("undated", undated), ("fast", fast), ("systemic", systemic))}
    assert said["inside"].startswith(f"At least since {ONSET:%b} {ONSET.day}")
    assert "is 3.3\xa0min: inside the band, slower than 3 of 3 teammates, 67% above the reference" in said["inside"]
    flagged = undated.opened_at
    assert said["undated"].startswith(f"Flagged on {flagged:%b} {flagged.day}, {flagged.year} (start not dated), "
                                      "Анна Петрова's median")
    assert "50% below the minimum" in said["fast"] and "possible skipped work, no time lost." in said["fast"]
    assert "2 of 4 managers of team north are slow on Offer" in said["systemic"]
    token = await login(api, "dana")
    await api.post("/account/language", data={"language": "ru", "csrf": token})
    russian, html = await drawdown_page(api, inside)
    assert russian["explanation"].startswith("Как минимум с ") and "медиана менеджера Анна Петрова на шаге «Offer»" \
        in russian["explanation"] and "в пределах нормы, но медленнее 3 из 3 коллег" in russian["explanation"]
    assert "как минимум с" in html and "остальные в команде" in html


async def test_confidence_in_words_with_its_reason(api: Any, client: storage.Client) -> None:
    store_pair_stats(client, "crm", run_rows(300_000), today() - timedelta(days=13), today())
    await login(api, "dana")
    cases = {"high": slow_flag(client, periods=4), "medium": slow_flag(client, periods=3),
             "low": slow_flag(client, n=30)}
    for level, flag in cases.items():
        data, html = await drawdown_page(api, flag)
        assert data["confidence"]["level"] == level
        assert f'class="confidence confidence-{level}"' in html and str(escape(data["confidence"]["why"])) in html
    assert (await drawdown_page(api, cases["high"]))[0]["confidence"]["why"] == \
        "25% past the band's limit and in drawdown in each of the last 4 weeks, from 60 sessions"


async def test_statistics_behind_a_disclosure_in_words_never_a_q_value(api: Any, client: storage.Client) -> None:
    store_pair_stats(client, "crm", run_rows(300_000), today() - timedelta(days=13), today())
    flag = slow_flag(client, q_value=0.00071)
    await login(api, "dana")
    _, html = await drawdown_page(api, flag)
    stats = html.split('<details class="statistics">', 1)[1].split("</details>", 1)[0]
    assert "chance of this by luck: under 1 in 1,000" in stats
    assert "4.5\xa0min to 5.5\xa0min" in stats  # the middle half of the sessions (quartiles of the run)
    assert "minimum 1.0\xa0min, reference 2.0\xa0min, maximum 4.0\xa0min" in stats and "Median time" in stats
    text = visible_text(html)
    assert "q =" not in text and "0.00071" not in text and "q-value" not in text
    assert not UUID.search(text)


async def test_one_primary_action_assign_coaching_prefilled(api: Any, client: storage.Client) -> None:
    store_pair_stats(client, "crm", run_rows(300_000), today() - timedelta(days=13), today())
    flag = slow_flag(client)
    await login(api, "dana")
    data, html = await drawdown_page(api, flag)
    assert data["links"]["coaching"] == f"/coaching/new?flag={flag.flag_id}" and data["assignment"] is None
    assert html.count('class="primary-action"') == 1
    assert f'<a class="primary-action" href="/coaching/new?flag={flag.flag_id}">' in html
    # acknowledge and dismiss are secondary, folded away; dismiss still needs its reason
    others = html.split('<details class="other-actions">', 1)[1].split("</details>", 1)[0]
    assert 'action="/drawdowns/' in others and "/ack" in others and "/dismiss" in others
    assert re.search(r'id="reason-dismiss"[^>]* required', others)


async def test_coaching_under_way_is_shown_by_title_state_and_due_date(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    store_pair_stats(client, "crm", run_rows(300_000), today() - timedelta(days=13), today())
    flag = slow_flag(client)
    course = next(c for c in coaching.list_courses(client, "crm") if c.title == "Offer basics")
    due = today() + timedelta(days=10)
    made = coaching.assign(client, settings, org.dana, site="crm", manager="m-1", step="offer", kind="course",
                           course_id=course.course_id, due=due, target=Target(240_000, 30), note="",
                           flag_id=flag.flag_id)
    await login(api, "dana")
    data, html = await drawdown_page(api, flag)
    assert data["assignment"]["course_title"] == "Offer basics" and data["assignment"]["state"] == "assigned"
    assert data["links"]["coaching"] is None and 'class="primary-action"' not in html
    assert f'<a href="/coaching/assignments/{made.assignment_id}">Offer basics</a>' in html
    assert f"assigned, due {due:%b} {due.day}, {due.year}" in html
    assert "coaching assigned" in html and "Coaching assigned" in html  # on the chart, and in the history
    assert not UUID.search(visible_text(html))  # the history's "coaching assignment <id>" is a link by words


async def test_a_fast_flag_has_no_time_lost_and_no_coaching_on_speed(api: Any, client: storage.Client) -> None:
    store_pair_stats(client, "crm", run_rows(30_000, status="fast"), today() - timedelta(days=13), today())
    flag = slow_flag(client, kind="fast", median_ms=30_000)
    await login(api, "dana")
    data, html = await drawdown_page(api, flag)
    assert data["flag"]["minutes_lost_per_week"] == 0 and data["links"]["coaching"] is None
    assert "none (possible skipped work)" in html and "steps may be skipped" in html


async def test_a_systemic_flag_shows_the_team_and_each_slow_manager(api: Any, client: storage.Client) -> None:
    rows = run_rows(300_000)
    rows[2].update(status="slow", median_ms=260_000, minutes_lost_per_week=30.0)
    store_pair_stats(client, "crm", rows, today() - timedelta(days=13), today())
    flag = slow_flag(client, kind="systemic", manager="", managers_=("m-1", "m-3"), median_ms=150_000)
    await login(api, "dana")
    data, html = await drawdown_page(api, flag)
    slow = data["evidence"]["slow_managers"]
    assert [s["manager"] for s in slow] == ["m-1", "m-3"] and slow[0]["manager_name"] == "Анна Петрова"
    assert len(slow[0]["weeks"]) == len(data["evidence"]["weeks"])
    assert all(w["manager_median_ms"] is None for w in data["evidence"]["weeks"])
    assert data["evidence"]["weeks"][-1]["team_median_ms"] is not None
    assert data["flag"]["minutes_lost_per_week"] == 74.0  # the sum over its slow managers
    assert "team north" in html and "each slow manager: Анна Петрова" in html
    assert 'href="/steps/offer?site=crm">Open the step and its band</a>' in html


async def test_the_list_says_since_when_and_the_verdict_in_the_shared_words(api: Any, client: storage.Client) -> None:
    store_pair_stats(client, "crm", run_rows(300_000), today() - timedelta(days=13), today())
    slow_flag(client, at_least=True)
    slow_flag(client, kind="fast", median_ms=30_000, start=None)
    slow_flag(client, median_ms=200_000)
    await login(api, "dana")
    html = await (await api.get("/drawdowns")).text()
    assert '<span class="verdict-badge slow">' in html and '<span class="verdict-badge fast">' in html
    assert f"at least since {ONSET:%b} {ONSET.day}, {ONSET.year}" in html
    assert f"since about {ONSET:%b} {ONSET.day}" in html
    assert "flagged on " in html and "0 · possible skipped work" in html
    assert "inside the band, slower than teammates" in html
    assert html.count('class="table-scroll"') == 1
    data = await (await api.get("/api/v1/drawdowns")).json()
    assert {f["start_at_least"] for f in data["flags"]} == {True, False}


async def test_the_json_twin_is_declared(api: Any) -> None:
    spec = await (await api.get("/openapi.json")).json()
    answer = spec["paths"]["/api/v1/drawdowns/{flag_id}"]["get"]
    text = str(answer)
    for name in ("evidence", "onset", "confidence", "explanation"):
        assert name in text


def test_the_chart_marks_at_least_since_and_a_due_date_past_the_last_week() -> None:
    from dashboards import charts
    from dashboards.i18n import Translator

    weeks = [LAST_MONDAY - timedelta(weeks=3 - i) for i in range(4)]
    band = charts.Limits(*BAND)
    drawn = charts.evidence(Translator("en"), label="Анна on Offer", weeks=weeks, sessions=[30] * 4,
                            main=charts.Series("Анна", [300_000.0] * 4),
                            compare=charts.Series("rest of the team", [120_000.0] * 4), bands=[band] * 4,
                            onset=weeks[0] - timedelta(days=20), at_least=True,
                            events=[(weeks[-1] + timedelta(days=30), "due later")])
    assert "at least since" in drawn and "<polygon" in drawn  # an arrow to the left: it began before the data
    assert "due later →" in drawn  # drawn at the right edge, pointing on
    assert drawn.count("▲") >= 4  # every week above the band has its shape, in the tooltips
    assert "max 4.0\xa0min" in drawn and "ref. 2.0\xa0min" in drawn
