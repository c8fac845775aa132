"""The drawdown pages' words about time and dates, as a director reads them: the weekly minutes under the
chart and in "where the extra time goes" say what each is measured against, a drawdown that held every
week says "in each of the last 4 weeks", and the list says when a drawdown began and when it was flagged
apart, an undated one in the overview's words ("flagged on ...")."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from analysis.decomposition import Usage, decompose
from dashboards.i18n import Translator
from dashboards.pages.drawdowns import began_words, decomposition_words, explanation, persistence_words
from kernel import flag_store, sites, storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import load_process, make_flag
from tests.web_helpers import SECRET, login, make_accounts

OPENED = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
ONSET = date(2026, 11, 6)


def a_flag(**changes: Any) -> flag_store.StoredFlag:
    flag = flag_store.StoredFlag(
        flag_id="f", site="crm", kind="slow", team="north", step="pay", manager="m1", managers=("m1",), status="open",
        opened_at=OPENED, updated_at=OPENED, resolved_at=None, window_start=date(2026, 11, 21),
        window_end=date(2026, 12, 4), n=46, median_ms=216_000, min_ms=56_000, reference_ms=102_000, max_ms=186_000,
        q_value=0.001, start_date=ONSET, periods_in_drawdown=4, minutes_lost_per_week=45.0, severity=1,
        reasons=(), periods_without_condition=0, last_period=date(2026, 11, 30), version=0)
    return replace(flag, **changes)


def said(language: str, flag: flag_store.StoredFlag) -> str:
    row = {"manager_name": "Анна", "step_title": "Payment", "minutes_lost_per_week": flag.minutes_lost_per_week}
    return explanation(Translator(language), flag, row, {"slower_than": 5, "of": 5}, 4, 1, 1)


def split(lost: float) -> dict[str, Any] | None:
    """A manager 50 minutes a week over the rest of the team on the same sessions (means, all the time)."""
    mine = Usage(sessions=46, visits=46, active_ms=46 * 210_000.0, idle_ms=46 * 20_000.0, hidden_ms=46 * 5_000.0)
    team = Usage(sessions=200, visits=200, active_ms=200 * 90_000.0, idle_ms=200 * 10_000.0, hidden_ms=200 * 4_000.0)
    d = decompose(mine, team, 14)
    assert d is not None
    return decomposition_words(Translator("en"), d, "Анна", "Payment", False, lost)


@pytest.mark.parametrize(("language", "every", "some"), [
    ("en", "in each of the last 4 weeks", "in 3 of the last 4 weeks"),
    ("ru", "в каждую из последних 4 недель", "в 3 из последних 4 недель")])
def test_a_drawdown_of_every_week_is_said_in_each_of_the_last_weeks(language: str, every: str, some: str) -> None:
    _ = Translator(language)
    assert every in persistence_words(_, 4, 4) and some in persistence_words(_, 3, 4)
    assert every in said(language, a_flag(periods_in_drawdown=4))
    assert some in said(language, a_flag(periods_in_drawdown=3))
    assert not re.search(r"\b4 (of|из) (the )?(last|последних) 4\b", said(language, a_flag(periods_in_drawdown=4)))


def test_the_time_lost_under_the_chart_says_it_is_against_the_reference() -> None:
    assert "time lost against the reference: about 45\xa0min a week." in said("en", a_flag())
    assert "Потери относительно эталона — около 45\xa0мин в неделю." in said("ru", a_flag())


def test_the_split_says_it_is_against_the_team_and_not_the_time_lost_when_the_figures_differ() -> None:
    words = split(lost=45.0)
    assert words is not None and words["total"] == "50"
    sentence = words["sentence"]
    assert sentence.startswith("Анна spends 50 minutes a week more on Payment than the rest of the team")
    assert ("This compares the average session with the rest of the team's, so it is not the time lost "
            "(45\xa0min a week), which compares the median with the reference.") in sentence
    # the same figure twice is no contradiction: nothing more is said
    assert "time lost" not in split(lost=50.0)["sentence"]  # type: ignore[index]
    assert "time lost" not in split(lost=0.0)["sentence"]  # type: ignore[index]


def flat(text: str) -> str:
    """Words with every kind of space (a date's no-break ones included) as a plain space."""
    return re.sub(r"\s", " ", text)


@pytest.mark.parametrize(("language", "flagged", "about"), [
    ("en", "flagged on Dec 5, 2026", "since about Nov 6, 2026"),
    ("ru", "отмечена 5 дек. 2026 г.", "примерно с 6 нояб. 2026 г.")])
def test_an_undated_drawdown_is_said_as_the_overview_says_it(language: str, flagged: str, about: str) -> None:
    _ = Translator(language)
    undated = began_words(_, None, False, OPENED)
    assert undated == _("overview.flagged_on", date=_.date(OPENED)) and flat(undated) == flagged
    assert flat(began_words(_, ONSET, False, OPENED)) == about
    assert flat(said(language, a_flag(start_date=None))).startswith(flagged[0].upper() + flagged[1:])


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    make_accounts(client)
    load_process(client)
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


async def test_the_list_says_when_it_began_and_when_it_was_flagged_apart(api: Any, client: storage.Client) -> None:
    dated = make_flag(client, "crm", manager="m1", step="offer", minutes_lost=90, opened_days_ago=2)
    undated = make_flag(client, "crm", manager="m2", step="needs", minutes_lost=20, opened_days_ago=0)
    undated = replace(undated, start_date=None, version=undated.version + 1)
    flag_store.write(client, [undated])
    await login(api, "ada")
    html = await (await api.get("/drawdowns")).text()
    cells = re.findall(r'<td class="flag-since"[^>]*>(.*?)</td>', html, re.S)
    assert len(cells) == 2
    start, opened = dated.start_date, dated.opened_at
    assert start is not None
    assert cells[0] == (f"since about {start:%b} {start.day}, {start.year}<br><small>flagged on "
                        f"{opened:%b} {opened.day}, {opened.year}, 2 d ago</small>")
    flagged = undated.opened_at
    assert cells[1] == f"flagged on {flagged:%b} {flagged.day}, {flagged.year}<br><small>today</small>"
    assert "not dated" not in html and ">Age<" not in html and ">Opened<" not in html
    assert html.count('<th scope="col"') == 8 and 'colspan="10"' not in html


async def test_the_detail_page_says_flagged_on_as_the_overview_does(api: Any, client: storage.Client) -> None:
    flag = make_flag(client, "crm", manager="m1", step="offer", opened_days_ago=1)
    await login(api, "ada")
    html = await (await api.get(f"/drawdowns/{flag.flag_id}")).text()
    opened = flag.opened_at
    assert f"flagged on {opened:%b} {opened.day}, {opened.year}" in html and "opened " not in html.lower().split(
        '<p class="flag-status">', 1)[1].split("</p>", 1)[0]
    assert datetime.now(UTC) - opened < timedelta(days=2)
