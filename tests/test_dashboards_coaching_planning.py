"""The assign form plans (how large an improvement the evaluation can confirm, how many days the
target needs, longer windows on the form) and recommends what has worked on the step; the
effectiveness page ranks courses and mentors by their pooled effect."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import coaching
from coaching import _store, assignments, planning
from coaching.lifecycle import SYSTEM_ACTOR, CoachingEvent, Target
from coaching.permissions import Operator
from kernel import flag_store, storage, users
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.coaching_helpers import ROOT, add_sessions, at, build_org, today
from tests.coaching_helpers import sign_in as login
from tests.dashboard_data import make_flag
from tests.web_helpers import SECRET


@pytest.fixture
def org(client: storage.Client, site: Any) -> Any:
    made = build_org(client, site.name)
    first, last = today() - timedelta(days=28), today() - timedelta(days=1)
    add_sessions(client, made.site, "m-1", first, last, 300, per_day=3, sigma=0.5, seed=1)  # 5-min offers
    for i, peer in enumerate(("m-2", "m-3", "m-4")):
        add_sessions(client, made.site, peer, first, last, 260, per_day=4, sigma=0.5, seed=10 + i)
    return made


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, org: Any) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


async def plan_of(api: Any, **query: Any) -> dict[str, Any]:
    found = await (await api.get("/api/v1/coaching/new", params={"manager": "m-1", "step": "offer", **query})).json()
    return found["planning"]  # type: ignore[no-any-return]


async def test_the_plan_in_the_json_twin_matches_the_planning_module(api: Any, client: storage.Client,
                                                                    settings: Settings) -> None:
    await login(api, "dana")
    plan = await plan_of(api, target_minutes="3")
    # 3 sessions a weekday for 4 weeks: 60 sessions seen, about 30 a fortnight; three teammates to compare with
    assert plan["sessions_seen"] == 60 and plan["peers"] == 3 and plan["reason"] is None
    assert plan["target_change"] == pytest.approx(1 - 180_000 / plan["median_ms"])
    se, mde = plan["standard_error"], plan["min_detectable_change"]
    available = plan["availability"]
    assert available == pytest.approx(planning.availability(plan["sessions_after"])) and available > 0.95
    df = plan["degrees_of_freedom"]  # the verdict's t's, expected
    assert mde == pytest.approx(planning.min_detectable_change(se, at_power=0.8 / available, df=df)) and 0.2 < mde < 0.6
    assert plan["power_at_target"] == pytest.approx(available * planning.power(plan["target_change"], se, df=df))
    assert plan["confirmable"] is (plan["power_at_target"] >= 0.8)
    longer = await plan_of(api, target_minutes="3", pre_days="28", post_days="28")
    assert longer["min_detectable_change"] < mde and longer["standard_error"] < se
    assert longer["power_at_target"] > plan["power_at_target"]


async def test_a_target_too_small_for_the_windows_is_warned_about_with_longer_windows_offered(
        api: Any, client: storage.Client) -> None:
    await login(api, "dana")
    near = (await plan_of(api, target_minutes="4.5"))  # about 10% below a 5-minute median
    assert near["confirmable"] is False and near["days_to_verdict"] > 28
    html = await (await api.get("/coaching/new", params={"manager": "m-1", "step": "offer",
                                                         "target_minutes": "4.5"})).text()
    assert "longer than the longest window (28 days)" in html
    # a target between: confirmable with windows the form allows, and the form offers them
    for minutes in ("3.9", "3.8", "3.7", "3.6", "3.5"):
        mid = await plan_of(api, target_minutes=minutes)
        if not mid["confirmable"] and mid["days_to_verdict"] and mid["days_to_verdict"] <= 28:
            break
    else:
        pytest.fail("no target between 'confirmable' and 'beyond the longest window'")
    html = await (await api.get("/coaching/new", params={"manager": "m-1", "step": "offer",
                                                         "target_minutes": minutes})).text()
    days = mid["days_to_verdict"]
    assert f"Confirming it needs about {days} days after the coaching (and at least as many before)." in html
    link = html.split(f">Measure {days} days after the coaching<")[0].rsplit('href="', 1)[1].split('"')[0]
    query = parse_qs(urlsplit(link.replace("&amp;", "&")).query)
    assert query["pre_days"] == [str(max(28, days))] and query["post_days"] == [str(days)]
    assert int(query["within_days"][0]) >= 7 + days  # room for the longer window after the default due date
    followed = await plan_of(api, target_minutes=minutes, pre_days=str(max(28, days)), post_days=str(days))
    assert followed["confirmable"] is True
    users.set_language(client, "dana", "ru", actor="test")  # the reader's language
    html = await (await api.get("/coaching/new", params={"manager": "m-1", "step": "offer",
                                                         "target_minutes": minutes})).text()
    assert "Что сможет показать оценка" in html and f"нужно около {days} д" in html and "после обучения" in html


async def test_no_plan_without_enough_sessions_or_peers(api: Any, client: storage.Client, org: Any) -> None:
    await login(api, "dana")
    plan = (await (await api.get("/api/v1/coaching/new", params={"manager": "m-2", "step": "needs"})).json())
    assert plan["planning"]["reason"] == "few_sessions" and plan["planning"]["min_detectable_change"] is None
    html = await (await api.get("/coaching/new", params={"manager": "m-2", "step": "needs"})).text()
    assert "too few for a verdict with these windows (at least 20 in each)" in html
    assert (await (await api.get("/api/v1/coaching/new")).json())["planning"] is None  # nobody chosen yet


async def test_check_the_plan_shows_the_form_again_and_assigns_nothing(api: Any, client: storage.Client,
                                                                       org: Any) -> None:
    token = await login(api, "dana")
    fields = {"csrf": token, "site": org.site, "manager": "m-1", "step": "offer", "kind": "mentor_meeting",
              "mentor": "tom", "due": (today() + timedelta(days=7)).isoformat(), "target_minutes": "3.5",
              "within_days": "40", "pre_days": "21", "post_days": "21", "check_plan": "1"}
    response = await api.post("/coaching/assign", data=fields, allow_redirects=False)
    assert response.status == 303
    location = response.headers["Location"]
    assert location.startswith("/coaching/new?") and "csrf" not in location  # the token stays out of URLs
    assert coaching.list_assignments(client, org.site) == []
    html = await (await api.get(location)).text()
    assert 'name="pre_days" value="21"' in html and 'name="post_days" value="21"' in html
    assert 'value="3.5"' in html and 'name="within_days" required value="40"' in html
    assert "With 21 days before and 21 days after" in html
    # the JSON API answers an assignment or an error, never the form's redirect, however the body is sent
    api_form = await api.post("/api/v1/coaching/assign", data={k: v for k, v in fields.items() if k != "csrf"},
                              headers={"X-CSRF-Token": token})
    assert api_form.status == 400 and (await api_form.json())["field"] == "check_plan"
    assert coaching.list_assignments(client, org.site) == []
    del fields["check_plan"]
    response = await api.post("/coaching/assign", data=fields, allow_redirects=False)
    assert response.headers["Location"].startswith("/coaching/assignments/")
    [made] = coaching.list_assignments(client, org.site)
    assert (made.pre_days, made.post_days) == (21, 21)  # the windows the director chose are the assignment's


def evaluated(client: storage.Client, settings: Settings, org: Any, manager: str, effect: float,
              course_id: str = "offer-basics", ci: float = 12.0) -> None:
    """An assignment of `manager` on the offer, done and evaluated with `effect` % relative to peers."""
    admin = org.admin
    a = assignments.assign(client, settings, admin, site=org.site, manager=manager, step="offer", kind="course",
                           course_id=course_id, due=today() - timedelta(days=40), target=Target(240_000, 60),
                           now=at(today() - timedelta(days=45)))
    a = assignments.mark_done(client, settings, admin, a.assignment_id, now=at(today() - timedelta(days=40)))
    verdict = "improved" if effect + ci < 0 else "no_change"
    now = at(today() - timedelta(days=20))
    event = CoachingEvent(a.assignment_id, a.version + 1, str(uuid.uuid4()), now, SYSTEM_ACTOR, "evaluated", "",
                          {"checkpoint": 0, "verdict": verdict, "target_met": False, "relative_effect_pct": effect,
                           "post_median_ms": 250_000.0})
    assignments._append(client, settings, Operator(SYSTEM_ACTOR), a, event)
    figures = {"pre_n": 40, "post_n": 40, "pre_median_ms": 300_000.0, "post_median_ms": 250_000.0,
               "change_pct": effect, "relative_effect_pct": effect, "minutes_saved_per_week": 10.0,
               "relative_effect_ci_pct": [effect - ci, effect + ci]}
    _store.insert_evaluation(client, _store.StoredEvaluation(
        org.site, a.assignment_id, 0, now, today() - timedelta(days=59), today() - timedelta(days=46),
        today() - timedelta(days=39), today() - timedelta(days=26), verdict, False, figures))


async def test_the_form_recommends_the_course_with_the_best_pooled_effect(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    for manager, effect in (("m-1", -25.0), ("m-2", -20.0), ("m-3", -30.0), ("s-1", -22.0)):
        evaluated(client, settings, org, manager, effect)
    coaching.add_course(client, ROOT, site=org.site, title="Offer refresher", steps=["offer"])
    evaluated(client, settings, org, "s-2", 5.0, course_id="offer-refresher")
    await login(api, "ada")
    found = await (await api.get("/api/v1/coaching/new", params={"manager": "m-4", "step": "offer"})).json()
    pick = found["recommended"]
    assert pick["key"] == "offer-basics" and (pick["improved"], pick["assignments"]) == (4, 4)
    assert -30 < pick["pooled_effect_pct"] < -15 and pick["pooled_ci_pct"][0] < pick["pooled_effect_pct"]
    html = await (await api.get("/coaching/new", params={"manager": "m-4", "step": "offer"})).text()
    assert "Course “Offer basics”: 4 of 4 managers improved, typical effect −" in html
    page = await (await api.get("/api/v1/coaching/effectiveness")).json()
    ranked = [(p["step"], p["key"]) for p in page["pooled"]]
    assert ranked == [("offer", "offer-basics"), ("offer", "offer-refresher")]
    refresher = page["pooled"][1]
    # one assignment: pulled toward the step's average, below its own +5%
    assert refresher["pooled_effect_pct"] < refresher["raw_effect_pct"] == pytest.approx(5.0)
    html = await (await api.get("/coaching/effectiveness")).text()
    assert "Typical effect" in html and "Step: Offer" in html
    # a director sees the pooled effects over their teams' assignments only: south's are not pooled for dana
    await login(api, "dana")
    dana = await (await api.get("/api/v1/coaching/effectiveness")).json()
    assert [p["assignments"] for p in dana["pooled"]] == [3]


@pytest.mark.parametrize("language", ["en", "ru"])
async def test_the_form_says_why_it_recommends_nothing(api: Any, client: storage.Client, settings: Settings,
                                                       org: Any, language: str) -> None:
    """No recommendation is said as such, with its reason: nothing evaluated on the step yet, too few
    effects to pool (one good result is not a recommendation), or none a gain; with the count and
    the way to the effectiveness page. Never a silent gap."""
    users.set_language(client, "ada", language, actor="test")
    await login(api, "ada")
    query = {"manager": "m-4", "step": "offer"}

    async def form() -> tuple[dict[str, Any], str]:
        found = await (await api.get("/api/v1/coaching/new", params=query)).json()
        return found, unescape(await (await api.get("/coaching/new", params=query)).text())

    found, html = await form()
    assert (found["recommended"], found["evaluated_on_step"], found["no_recommendation"]) == (
        None, 0, "nothing_evaluated")
    assert {"en": "Nothing to recommend yet: no coaching on this step has been evaluated.",
            "ru": "Рекомендовать пока нечего: обучение на этом шаге ещё не оценивалось."}[language] in html
    evaluated(client, settings, org, "m-1", -40.0)  # one good result: the step has nothing to pool toward
    found, html = await form()
    assert (found["recommended"], found["evaluated_on_step"], found["no_recommendation"]) == (None, 1, "too_few")
    assert {"en": "1 assignment on this step has been evaluated, too few to tell a course's or a mentor's effect "
                  "from luck.",
            "ru": "на этом шаге оценено 1 задание — слишком мало, чтобы отличить эффект курса или наставника "
                  "от случайности."}[language] in html
    for manager in ("m-2", "m-3"):
        evaluated(client, settings, org, manager, 30.0)  # slower than the peers: the course's pooled effect a loss
    found, html = await form()
    assert (found["recommended"], found["evaluated_on_step"], found["no_recommendation"]) == (None, 3, "no_gain")
    assert {"en": "3 assignments on this step have been evaluated, and no course or mentor shows an improvement.",
            "ru": "на этом шаге оценено 3 задания, и ни курс, ни наставник пока не показали улучшения."}[
        language] in html
    assert re.search(r'<a href="/coaching/effectiveness\?site=[^"]+">(What works|Что помогает)</a>', html)
    # without a step chosen there is nothing to say about one
    found = await (await api.get("/api/v1/coaching/new", params={"manager": "m-4"})).json()
    assert (found["evaluated_on_step"], found["no_recommendation"]) == (None, None)


async def test_the_target_field_shows_minutes_as_the_reader_types_them(api: Any, client: storage.Client,
                                                                      org: Any) -> None:
    """The target a drawdown fills in reads "1,5" for a Russian director, as they would type it, and
    "1.5" in English; what the reader typed stays as typed."""
    flag = make_flag(client, org.site, manager="m-1", step="offer")
    flag_store.write(client, [dataclasses.replace(flag, reference_ms=90_000, version=flag.version + 1)])
    field = 'name="target_minutes" inputmode="decimal" required value="{}"'
    await login(api, "ada")
    assert field.format("1.5") in await (await api.get("/coaching/new", params={"flag": flag.flag_id})).text()
    users.set_language(client, "ada", "ru", actor="test")
    assert field.format("1,5") in await (await api.get("/coaching/new", params={"flag": flag.flag_id})).text()
    typed = await (await api.get("/coaching/new", params={"flag": flag.flag_id, "target_minutes": "1.25"})).text()
    assert field.format("1.25") in typed


@pytest.mark.parametrize("language", ["en", "ru"])
async def test_the_effectiveness_page_writes_effects_as_the_ranking_does(
        api: Any, client: storage.Client, settings: Settings, org: Any, language: str) -> None:
    """Both tables give an effect as a signed whole percent with a real minus, and a course not yet
    followed up says so instead of "0 / 0"."""
    for manager, effect in (("m-1", -25.0), ("m-2", -31.4), ("m-3", -20.0)):
        evaluated(client, settings, org, manager, effect)
    users.set_language(client, "ada", language, actor="test")
    await login(api, "ada")
    html = await (await api.get("/coaching/effectiveness")).text()
    across = html.split("<h2>", 1)[1]
    assert "−25\N{NO-BREAK SPACE}%" in across if language == "ru" else "−25%" in across  # the median of the three
    assert "-25" not in across and "25.0" not in across and "25,0" not in across
    assert {"en": "not checked yet", "ru": "ещё не проверялось"}[language] in across and "0 / 0" not in across


@pytest.mark.parametrize("language", ["en", "ru"])
async def test_the_plan_and_the_recommendation_read_as_words_of_the_readers_language(
        api: Any, client: storage.Client, settings: Settings, org: Any, language: str) -> None:
    """The sweep's checks (tests/browser_dashboards/test_every_word.py) on the form with a plan, a
    warning, a recommendation and its figures, and on the effectiveness page."""
    from tests.browser_dashboards.test_every_word import problems

    for manager, effect in (("m-2", -25.0), ("m-3", -20.0), ("m-4", -30.0)):
        evaluated(client, settings, org, manager, effect)
    users.set_language(client, "ada", language, actor="test")
    await login(api, "ada")
    for path, params in (("/coaching/new", {"manager": "m-1", "step": "offer", "target_minutes": "4.5"}),
                         ("/coaching/new", {"manager": "m-1", "step": "offer", "target_minutes": "3.6"}),
                         ("/coaching/new", {"manager": "m-2", "step": "needs"}),
                         ("/coaching/effectiveness", {})):
        html = await (await api.get(path, params=params)).text()
        main = html.split("<main", 1)[1].split("</main>", 1)[0]
        main = re.sub(r"<(code|pre|select)\b.*?</\1>", " ", main, flags=re.S)  # choices and code are not prose
        text = unescape(re.sub(r"<[^>]+>", " ", main.split(">", 1)[1]))
        assert ("Что сможет показать оценка" in text or "Типичный эффект" in text or language == "en")
        assert not problems(text, language), (path, params, problems(text, language))


async def test_a_window_after_likely_to_fall_short_is_said_instead_of_a_detectable_change(
        api: Any, client: storage.Client, org: Any) -> None:
    first, last = today() - timedelta(days=28), today() - timedelta(days=1)
    add_sessions(client, org.site, "m-1", first, last, 200, step="needs", per_day=1, seed=3)
    for i, peer in enumerate(("m-2", "m-3", "m-4")):
        add_sessions(client, org.site, peer, first, last, 200, step="needs", per_day=4, seed=30 + i)
    await login(api, "dana")
    # one session a weekday: 20 in four weeks, so about 20 expected in 28 days after: as likely short as not
    plan = await plan_of(api, step="needs", pre_days="28", post_days="28")
    assert plan["reason"] is None and plan["sessions_after"] == pytest.approx(20.0)
    assert 0.4 < plan["availability"] < 0.8 and plan["min_detectable_change"] is None
    html = await (await api.get("/coaching/new", params={"manager": "m-1", "step": "needs", "pre_days": "28",
                                                         "post_days": "28"})).text()
    assert "the window after may well hold fewer than 20 sessions (about 20 expected)" in html
    assert "or more is confirmed" not in html
