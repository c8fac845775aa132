"""The coaching board, an evaluated assignment's page and the assign form, as a trainer, a director
and the coached manager read them: filters chosen from known values, states as chips with words,
overdue marked, the effect in words and number, the result in one sentence, the chart's dates,
each kind's own fields and the catalog's steps ticked from the process."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest

import coaching
from coaching import measure
from coaching.lifecycle import Target
from dashboards import charts
from dashboards.i18n import Translator
from dashboards.pages.coaching import result_sentence, signed_pct
from kernel import storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.coaching_helpers import add_sessions, at, build_org, today
from tests.coaching_helpers import sign_in as login
from tests.web_helpers import SECRET


@pytest.fixture
def org(client: storage.Client, site: Any) -> Any:
    return build_org(client, site.name)


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, org: Any) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


def words(html: str) -> str:
    main = html.split("<main", 1)[1].split("</main>", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", main))


def evaluated(client: storage.Client, settings: Settings, org: Any) -> Any:
    """m-1's self-paced course on Offer, done 26 days ago, after which m-1 got 30% faster and the peers did not."""
    first, last, change = today() - timedelta(days=60), today() - timedelta(days=1), today() - timedelta(days=25)
    add_sessions(client, org.site, "m-1", first, change - timedelta(days=1), 300, seed=1)
    add_sessions(client, org.site, "m-1", change, last, 210, seed=2)
    for i, peer in enumerate(["m-2", "m-3", "m-4"]):
        add_sessions(client, org.site, peer, first, change - timedelta(days=1), 250, seed=10 + i)
        add_sessions(client, org.site, peer, change, last, 250, seed=20 + i)
    assigned = at(today() - timedelta(days=30))
    a = coaching.assign(client, settings, org.dana, site=org.site, manager="m-1", step="offer", kind="course",
                        course_id="offer-basics", due=assigned.date() + timedelta(days=7),
                        target=Target(240_000, 40), now=assigned)
    coaching.mark_done(client, settings, org.max, a.assignment_id, now=at(today() - timedelta(days=26)))
    measure.evaluate_due(client, settings)
    return coaching.get(client, a.assignment_id)


# --- the result in one sentence ---------------------------------------------------------------


FIGURES = {"pre_median_ms": 306_000, "post_median_ms": 234_000, "change_pct": -23.6, "peers_change_pct": -2.2}


def test_the_result_in_one_sentence_in_each_language() -> None:
    english = result_sentence(Translator("en"), "Offer", {"verdict": "improved", "figures": FIGURES})
    assert english == ("Time on Offer fell from 5.1\xa0min to 3.9\xa0min (−24%), while peers changed −2%: improved, "
                       "confident.")
    russian = result_sentence(Translator("ru"), "Предложение", {"verdict": "improved", "figures": FIGURES})
    assert russian.startswith("Время на шаге «Предложение» снизилось с 5,1") and "у коллег" in russian
    assert "уверенно" in russian and "improved" not in russian
    few = result_sentence(Translator("en"), "Offer", {"verdict": "no_change",
                                                      "figures": {**FIGURES, "peer_group": "too_small"}})
    assert "too few peers" in few and few.endswith("no clear change beyond the peers'.")
    none = result_sentence(Translator("en"), "Offer", {"verdict": "insufficient_data", "figures": {}})
    assert none.startswith("Too few sessions on Offer")
    assert signed_pct(Translator("en"), 3.4) == "+3%" and signed_pct(Translator("en"), 0.2) == "0%"



def test_a_change_too_small_to_show_in_minutes_is_not_said_to_fall() -> None:
    """4.74 -> 4.67 min both read "4.7 min": the sentence says the time held, not "fell from 4.7 to 4.7"."""
    figures = {"pre_median_ms": 284_400, "post_median_ms": 280_200, "change_pct": -1.4, "peers_change_pct": -4.8}
    english = result_sentence(Translator("en"), "Contract", {"verdict": "no_change", "figures": figures})
    assert english.startswith("Time on Contract held at 4.7\xa0min (from 4.7\xa0min, −1%)"), english
    russian = result_sentence(Translator("ru"), "Договор", {"verdict": "no_change", "figures": figures})
    assert russian.startswith("Время на шаге «Договор» почти не изменилось: 4,7\xa0мин"), russian


def test_the_before_after_chart_has_a_date_axis() -> None:
    days = [date(2026, 10, 1) + timedelta(days=i) for i in range(30)]
    svg = str(charts.before_after(Translator("en"), label="x", days=days, manager_ms=[200_000.0] * 30,
                                  peers_ms=[None] * 30, pre=(days[0], days[9]), post=(days[20], days[29]),
                                  target_ms=180_000, band_max_ms=None))
    assert ">1 Oct<" in svg and ">8 Oct<" in svg and ">29 Oct<" in svg and ">before<" in svg and ">after<" in svg


# --- the board --------------------------------------------------------------------------------


async def test_board_filters_choose_managers_by_name_steps_by_title_and_states_in_words(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    from kernel import managers

    managers.set_manager(client, org.site, "m-1", name="Maxim Orlov", actor="test")
    coaching.assign(client, settings, org.dana, site=org.site, manager="m-1", step="offer", kind="mentor_meeting",
                    mentor="tom", due=today() + timedelta(days=5), target=Target(240_000, 30))
    await login(api, "dana")
    page = await (await api.get("/coaching?step=offer")).text()
    assert re.search(r'<select name="manager">.*<option value="m-1"[^>]*>Maxim Orlov</option>', page, re.S)
    assert re.search(r'<select name="step">.*<option value="offer" selected>Offer</option>', page, re.S)
    assert '<option value="tom">tom</option>' in page  # the catalog's mentors
    assert '<input name="manager"' not in page and '<input name="step"' not in page
    assert 'class="state-chip state-assigned"' in page and "○" in page
    twin = await (await api.get("/api/v1/coaching")).json()
    assert {"value": "m-1", "label": "Maxim Orlov"} in twin["choices"]["managers"]
    assert {"value": "offer", "label": "Offer"} in twin["choices"]["steps"]
    await login(api, "max")  # a manager's filters offer nobody else
    mine = await (await api.get("/api/v1/coaching")).json()
    assert [m["value"] for m in mine["choices"]["managers"]] == ["m-1"]


async def test_an_overdue_assignment_is_marked_in_words_and_an_evaluated_one_shows_its_effect(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    done = evaluated(client, settings, org)
    late = coaching.assign(client, settings, org.dana, site=org.site, manager="m-2", step="offer",
                           kind="mentor_meeting", mentor="tom", due=today() - timedelta(days=2),
                           target=Target(240_000, 30), now=at(today() - timedelta(days=5)))
    await login(api, "dana")
    page = await (await api.get("/coaching")).text()
    text = words(page)
    assert "⚠ overdue" in text and 'class="overdue-row"' in page
    effect = round(done.relative_effect_pct)
    assert f"−{abs(effect)}% vs peers, improved" in text
    twin = await (await api.get("/api/v1/coaching")).json()
    rows = {r["assignment_id"]: r for r in twin["assignments"]}
    assert rows[late.assignment_id]["overdue"] is True and rows[done.assignment_id]["overdue"] is False


# --- an evaluated assignment ------------------------------------------------------------------


@pytest.mark.parametrize("user", ["dana", "max"])
async def test_the_assignment_page_says_the_result_once_with_dates_and_no_ids(
        api: Any, client: storage.Client, settings: Settings, org: Any, user: str) -> None:
    a = evaluated(client, settings, org)
    await login(api, user)
    page = await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text()
    text = words(page)
    # the manager is not shown a group of 3 peers (fewer than peer_group_min): the sentence says so
    peers = r"while peers changed [−+]?\d+%" if user == "dana" else "with too few peers to compare"
    assert re.search(r"Time on Offer fell from [\d.]+ min to [\d.]+ min \(−\d+%\), " + peers + ": improved, "
                     r"confident\.", text), text[:600]
    headings = re.findall(r"<h[23][^>]*>(.*?)</h[23]>", page, re.S)
    assert sum("Result" in h for h in headings) == 1 and not any(re.sub(r"<[^>]*>|\s", "", h) == "Evaluation"
                                                                  for h in headings)
    assert a.assignment_id not in text and a.course_id not in text and "Offer basics" in text
    assert re.search(r">\d{1,2} [A-Z][a-z]{2}<", page)  # the chart's date axis
    twin = await (await api.get(f"/api/v1/coaching/assignments/{a.assignment_id}")).json()
    assert twin["result"].startswith("Time on Offer fell") and twin["evaluations"][0]["result"] == twin["result"]
    # the figures under it write a change as the sentence does (a real minus, whole percent), and say why the
    # effect relative to peers need not be the two median changes set against each other
    details = text[text.index("Change of the median"):]
    assert re.search(r"Change of the median −\d+% ", details) and not re.search(r"-\d+[.,]\d%", details)
    assert "not the medians, so it need not equal" in text


async def test_the_result_sentence_follows_the_readers_language(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    a = evaluated(client, settings, org)
    token = await login(api, "max")
    await api.post("/api/v1/account/language", headers={"X-CSRF-Token": token}, json={"language": "ru"})
    page = words(await (await api.get(f"/coaching/assignments/{a.assignment_id}")).text())
    assert "Время на шаге «" in page and "улучшение, уверенно" in page and "improved" not in page
    # the chance of the manager's own change in words, never a bare "p 0,0000"
    assert re.search(r"Вряд ли: такое большое изменение без реального случается реже чем в одном случае из 1\s000"
                     r"|Такое большое изменение без реального случается в [\d,]+\s?% случаев", page), page[-1500:]
    assert "0,0000" not in page


# --- the assign form and the catalog ----------------------------------------------------------


async def test_the_assign_form_has_a_part_per_kind_and_preselects_the_only_mentor(
        api: Any, client: storage.Client, org: Any) -> None:
    await login(api, "dana")
    form = await (await api.get("/coaching/new?manager=m-1&step=closing")).text()
    assert 'data-kind="mentor_meeting"' in form and 'data-kind="course"' in form
    assert '<option value="tina" selected>' in form  # the only mentor on closing
    both = await (await api.get("/coaching/new?manager=m-1")).text()
    assert " selected>tom" not in both and '<option value="tom" selected' not in both  # no step: nobody chosen


async def test_the_form_sends_both_parts_without_javascript_and_only_the_chosen_kind_counts(
        api: Any, client: storage.Client, org: Any) -> None:
    token = await login(api, "dana")
    due = (today() + timedelta(days=7)).isoformat()
    base = {"csrf": token, "site": org.site, "manager": "m-1", "step": "offer", "due": due, "target_minutes": "4",
            "within_days": "28"}
    meeting = await api.post("/coaching/assign", data={**base, "kind": "mentor_meeting", "mentor": "tom",
                                                       "course_id": "offer-workshop", "course_trainer": ""},
                             allow_redirects=False)
    assert meeting.status == 303 and "/coaching/assignments/" in meeting.headers["Location"]
    led = await api.post("/coaching/assign", data={**base, "kind": "course", "mentor": "", "course_id":
                                                   "offer-workshop", "course_trainer": "tom"}, allow_redirects=False)
    assert led.status == 303 and "/coaching/assignments/" in led.headers["Location"]
    made = {(a.kind, a.course_id, a.mentor) for a in coaching.list_assignments(client, org.site)}
    assert made == {("mentor_meeting", "", "tom"), ("course", "offer-workshop", "tom")}


async def test_the_catalog_ticks_steps_from_the_process(api: Any, client: storage.Client, org: Any) -> None:
    token = await login(api, "dana")
    page = await (await api.get("/coaching/catalog")).text()
    assert '<input type="checkbox" name="steps" value="offer">' in page and 'name="steps" required' not in page
    response = await api.post("/coaching/courses", data=[("csrf", token), ("site", org.site), ("title", "Both"),
                                                         ("steps", "offer"), ("steps", "needs")],
                              allow_redirects=False)
    assert response.status == 303
    made = [c for c in coaching.list_courses(client, org.site) if c.title == "Both"]
    assert made and sorted(made[0].steps) == ["needs", "offer"]
