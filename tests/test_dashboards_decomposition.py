"""The drawdown page's "where the extra time goes": the manager's excess over the rest of the team on the
step, read from the visits of the flag's window on the real engine, split into longer visits, returns and
idle and hidden time that add up (JSON `decomposition`), said in words in both languages with a stacked
bar and its figures; and the words of the page that take a count's plural form."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest

from dashboards.i18n import Translator
from kernel import flag_store, managers, storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.coaching_helpers import build_org
from tests.coaching_helpers import sign_in as login
from tests.dashboard_data import TODAY, drawdown_page, make_flag
from tests.web_helpers import SECRET

WINDOW = [TODAY - timedelta(days=13 - i) for i in range(14)]  # make_flag's window


def visit(manager: str, session: str, day: date, hour: int, active_s: float, idle_s: float = 0, hidden_s: float = 0,
          *, step: str = "offer", visit_id: str | None = None, seq: int = 0) -> bytes:
    start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()
    return orjson.dumps({"site": "crm", "visit_id": visit_id or str(uuid.uuid4()), "seq": seq, "final": True,
                         "manager": manager, "session_id": session, "customer": "c", "process": "sales", "step": step,
                         "path": f"/clients/:customer/{step}", "started_at": start, "active_ms": int(active_s * 1000),
                         "idle_ms": int(idle_s * 1000), "hidden_ms": int(hidden_s * 1000), "tracker": "test",
                         "source": "test"})


def sessions(manager: str, *, visits_every_other: int, active_s: float, idle_s: float = 0, hidden_s: float = 0
             ) -> list[bytes]:
    """Two sessions a day over the window: the first of each day with one visit, the second with
    `visits_every_other` (so 1.5 visits a session with 2), every visit the same times."""
    rows = []
    for day in WINDOW:
        for k, count in enumerate((1, visits_every_other)):
            session = f"{manager}-{day.isoformat()}-{k}"
            rows += [visit(manager, session, day, 9 + k * 3 + j, active_s, idle_s, hidden_s) for j in range(count)]
    return rows


@pytest.fixture
def org(client: storage.Client, site: Any) -> Any:
    made = build_org(client, "crm")
    managers.set_manager(client, "crm", "m-1", name="Анна Петрова", actor="test")
    # m-1: 1.5 visits a session of 3 min work, 30 s idle and 15 s in another tab; the rest of north: 1 visit of 2 min
    rows = sessions("m-1", visits_every_other=2, active_s=180, idle_s=30, hidden_s=15)
    for m in ("m-2", "m-3", "m-4"):
        rows += sessions(m, visits_every_other=1, active_s=120)
    # none of these count: a day before the window, another step, another team
    rows += [visit("m-1", "early", WINDOW[0] - timedelta(days=1), 9, 3600),
             visit("m-1", "needs", WINDOW[0], 15, 3600, step="needs"), visit("s-1", "south", WINDOW[0], 9, 3600)]
    # a visit reported twice (a checkpoint, then its final report): counted once, as its latest report
    replayed = str(uuid.uuid4())
    rows += [visit("m-2", "replay", WINDOW[3], 17, 9999, visit_id=replayed, seq=0),
             visit("m-2", "m-2-replay", WINDOW[3], 17, 120, visit_id=replayed, seq=1)]
    storage.insert_visits(client, b"\n".join(rows))
    return made


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, org: Any) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


def section(html: str) -> str:
    return html.split('<section class="time-split"', 1)[1].split("</section>", 1)[0]


async def test_the_excess_splits_into_parts_that_add_up(api: Any, client: storage.Client) -> None:
    flag = make_flag(client, "crm", manager="m-1", median_ms=300_000)
    await login(api, "dana")
    data, html = await drawdown_page(api, flag)
    d = data["decomposition"]
    # 28 sessions in 14 days: 14 a week. Manager 1.5 x 3.75 min = 5.625 min a session, the team 1 x 2 min (the
    # replayed visit counts once, as 2 minutes; 85 sessions, not 84)
    assert d["sessions_per_week"] == 14.0
    assert d["manager"]["visits_per_session"] == 1.5 and d["manager"]["sessions"] == 28
    assert d["team"]["sessions"] == 85 and d["team"]["visits_per_session"] == 1.0
    assert d["team"]["active_ms_per_visit"] == 120_000 and d["manager"]["idle_ms_per_visit"] == 30_000
    # Shapley: returns 14 x 0.5 x (3.75 + 2) / 2 = 20.125; longer 14 x 1 x 1.25 = 17.5; idle 8.75, hidden 4.375
    # (each to the tenth, within a tenth: the rounding that keeps them adding up moves one by a tenth)
    assert d["more_visits_minutes"] == pytest.approx(20.125, abs=0.1)
    assert d["longer_visits_minutes"] == pytest.approx(17.5, abs=0.1)
    assert d["idle_minutes"] == pytest.approx(8.75, abs=0.1) and d["hidden_minutes"] == pytest.approx(4.375, abs=0.1)
    assert d["total_minutes"] == pytest.approx(50.75, abs=0.051)
    parts = d["longer_visits_minutes"] + d["more_visits_minutes"] + d["idle_hidden_minutes"]
    assert round(parts, 6) == round(d["total_minutes"], 6)  # exactly, to the tenth shown
    assert round(d["idle_minutes"] + d["hidden_minutes"], 6) == round(d["idle_hidden_minutes"], 6)
    # the words: whole minutes that add up (51 = 18 + 20 + 13), the rates behind each part
    said = section(html)
    assert ("Анна Петрова spends 51 minutes a week more on Offer than the rest of the team would on the same "
            "sessions: 18 from longer visits (3.0\xa0min of work a visit against 2.0\xa0min), 20 from coming back "
            "to the step (1.5 visits a session against 1.0), 13 from idle and hidden time (45\xa0s a visit "
            "against 0\xa0s).") in said
    assert "Where the extra time goes" in said


async def test_a_stacked_bar_with_its_legend_and_a_table_of_its_figures(api: Any, client: storage.Client) -> None:
    flag = make_flag(client, "crm", manager="m-1", median_ms=300_000)
    await login(api, "dana")
    _, html = await drawdown_page(api, flag)
    said = section(html)
    bar = said.split('<svg class="split-bar"', 1)[1].split("</svg>", 1)[0]
    assert 'aria-hidden="true"' in bar  # the sentence says it; the bar is for the eye
    widths = [float(w) for w in re.findall(r'width="([\d.]+)"', bar)]
    assert len(widths) == 3 and sum(widths) == pytest.approx(600, abs=0.2)
    assert widths[1] > widths[0] > widths[2]  # 20 > 18 > 13, in the sentence's order
    assert "longer visits" in said and "coming back to the step" in said and "idle and hidden time" in said
    table = said.split('<details class="split-data">', 1)[1]
    assert "<th scope=\"row\">Visits a session</th><td class=\"num\">20</td><td class=\"num\">1.5</td>" in table
    assert "<th scope=\"row\">Time a session</th><td class=\"num\">51</td><td class=\"num\">5.6\xa0min</td>" in table
    assert ">Manager</th>" in table  # the column, not the name again (a long name broke a phone's table)
    css = await (await api.get("/static/drawdown.css")).text()
    assert ".split-bar .part-returns" in css


async def test_the_sentence_in_russian_takes_the_plural_of_its_count(api: Any, client: storage.Client) -> None:
    flag = make_flag(client, "crm", manager="m-1", median_ms=300_000)
    token = await login(api, "dana")
    await api.post("/account/language", data={"language": "ru", "csrf": token})
    _, html = await drawdown_page(api, flag)
    said = section(html)
    assert "Куда уходит лишнее время" in said
    assert ("Анна Петрова тратит на шаг «Offer» на 51 минуту в неделю больше, чем остальные в команде потратили бы "
            "на те же сессии: 18 — из-за более долгой работы за визит (3,0\xa0мин против 2,0\xa0мин); 20 — из-за "
            "возвратов к шагу (1,5 визита за сессию против 1,0); 13 — из-за простоя и скрытой вкладки") in said
    ru = Translator("ru")
    said = [ru.plural("drawdowns.extra_lead", n, who="А", step="Б", n=str(n)).split(" в неделю")[0] for n in (1, 3, 5)]
    assert [s.rsplit(" на ", 1)[1] for s in said] == ["1 минуту", "3 минуты", "5 минут"]


async def test_a_part_below_the_team_is_said_as_saved_and_draws_no_bar(
        api: Any, client: storage.Client) -> None:
    # m-2 never comes back to the step and is never idle, but a third of their visits take half an hour:
    # against a team that comes back (m-1), two parts take time away and one adds more than they take
    storage.insert_visits(client, b"\n".join(visit("m-2", f"long-{day}", day, 20, 1800) for day in WINDOW))
    flag = make_flag(client, "crm", manager="m-2", median_ms=300_000)
    await login(api, "dana")
    data, html = await drawdown_page(api, flag)
    d = data["decomposition"]
    assert d["more_visits_minutes"] < 0 < d["longer_visits_minutes"] and d["idle_hidden_minutes"] < 0
    assert d["total_minutes"] > 0
    said = section(html)
    assert "saved by coming back less often (1.0 visits a session against 1.2)" in said
    assert "saved by less idle and hidden time" in said
    assert '<svg class="split-bar"' not in said  # a stacked bar cannot show a part that takes away
    assert '<th scope="row">Visits a session</th><td class="num">-' in said or \
        '<th scope="row">Visits a session</th><td class="num">−' in said  # the table keeps the sign


async def test_no_extra_time_says_so(api: Any, client: storage.Client) -> None:
    flag = make_flag(client, "crm", manager="m-3", median_ms=300_000)  # like the team, below m-1
    await login(api, "dana")
    data, html = await drawdown_page(api, flag)
    assert data["decomposition"]["total_minutes"] < 0
    assert "take no longer than the rest of the team" in section(html)
    assert '<svg class="split-bar"' not in section(html)


async def test_a_systemic_flag_pools_its_slow_managers_and_a_fast_one_has_none(
        api: Any, client: storage.Client) -> None:
    systemic = make_flag(client, "crm", kind="systemic", manager="", managers=("m-1", "m-2"), median_ms=300_000)
    fast = make_flag(client, "crm", kind="fast", manager="m-3", median_ms=30_000)
    await login(api, "dana")
    data, html = await drawdown_page(api, systemic)
    d = data["decomposition"]
    assert d["manager"]["sessions"] == 28 + 29 and d["team"]["sessions"] == 56
    assert section(html).split('class="time-split-sentence">', 1)[1].startswith(
        "Together the slow managers spend ")
    data, html = await drawdown_page(api, fast)
    assert data["decomposition"] is None and '<section class="time-split"' not in html


async def test_the_json_twin_declares_the_decomposition(api: Any) -> None:
    spec = await (await api.get("/openapi.json")).json()
    assert "decomposition" in str(spec["paths"]["/api/v1/drawdowns/{flag_id}"]["get"])


async def test_the_history_says_when_relatively_with_the_date_in_its_tooltip(
        api: Any, client: storage.Client) -> None:
    flag = make_flag(client, "crm", manager="m-1", median_ms=300_000, opened_days_ago=3)
    token = await login(api, "dana")
    _, html = await drawdown_page(api, flag)
    history = html.split('<h2 id="history">', 1)[1]
    cell = re.search(r'<time datetime="[^"]+" title="([^"]+)">([^<]+)</time>', history)
    assert cell is not None and cell.group(2) == "3 days ago" and "UTC" in cell.group(1)
    await api.post("/account/language", data={"language": "ru", "csrf": token})
    _, html = await drawdown_page(api, flag)
    assert ">3 дня назад</time>" in html.split('<h2 id="history">', 1)[1]


@pytest.mark.parametrize(("key", "count", "values", "said"), [
    ("drawdowns.why_not_every_week", 4, {"weeks": "3", "of": "4"}, "в просадке 3 из последних 4 недель"),
    ("drawdowns.why_not_every_week", 1, {"weeks": "1", "of": "1"}, "в просадке 1 из последней 1 недели"),
    ("drawdowns.explain_systemic", 21, {"k": "3", "n": "21"}, "3 из 21 менеджера команды"),
    ("drawdowns.explain_systemic", 5, {"k": "3", "n": "5"}, "3 из 5 менеджеров команды"),
    ("drawdowns.why_team_every_week", 5, {"of": "5"}, "в просадке все последние 5 недель"),
    ("drawdowns.session_count", 41, {"n": "41"}, "41 сессия"),
    ("drawdowns.session_count", 3, {"n": "3"}, "3 сессии"),
    ("drawdowns.session_count", 60, {"n": "60"}, "60 сессий"),
    ("drawdowns.persist_every", 4, {"of": "4"}, "в каждую из последних 4 недель"),
    ("drawdowns.persist_some", 4, {"weeks": "3", "of": "4"}, "в 3 из последних 4 недель"),
])
def test_counts_in_the_drawdown_words_take_the_russian_plural(key: str, count: int, values: dict[str, str],
                                                               said: str) -> None:
    filler = {"since": "", "team": "north", "step": "Offer", "median": "", "max": "", "weeks": "3", "of": "4",
              "lost": "", "manager": "", "persist": ""}
    assert said in Translator("ru").plural(key, count, **{**filler, **values})


async def test_the_confidence_reason_counts_its_sessions_and_weeks_in_plural(api: Any, client: storage.Client
                                                                             ) -> None:
    from dataclasses import replace
    flag = make_flag(client, "crm", manager="m-1", median_ms=300_000)
    clear = replace(flag, n=41, periods_in_drawdown=4, version=flag.version + 1)
    flag_store.write(client, [clear])
    token = await login(api, "dana")
    await api.post("/account/language", data={"language": "ru", "csrf": token})
    data, _ = await drawdown_page(api, clear)
    assert data["confidence"]["why"].endswith("все последние 4 недели; в периоде 41 сессия")
    patchy = replace(clear, periods_in_drawdown=3, version=clear.version + 1)
    flag_store.write(client, [patchy])
    data, _ = await drawdown_page(api, patchy)
    assert data["confidence"]["why"] == "в просадке 3 из последних 4 недель, а не каждую неделю"


def test_rates_that_differ_are_never_shown_as_the_same() -> None:
    from analysis.decomposition import Usage, decompose
    from dashboards.pages.drawdowns import decomposition_words

    # 104 visits in 100 sessions against 1.00: a tenth would say "1.0 against 1.0" beside minutes it costs
    split = decompose(Usage(100, 104, 104 * 300_000, 0, 0), Usage(300, 300, 300 * 300_000, 0, 0), 14)
    words = decomposition_words(Translator("en"), split, "Ana", "Offer", False)
    assert words is not None and "(1.04 visits a session against 1.00)" in words["sentence"]
    split = decompose(Usage(100, 160, 160 * 300_000, 0, 0), Usage(300, 360, 360 * 300_000, 0, 0), 14)
    words = decomposition_words(Translator("ru"), split, "Ana", "Offer", False)
    assert words is not None and "(1,6 визита за сессию против 1,2)" in words["sentence"]
