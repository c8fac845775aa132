"""A parameter a person gets wrong is refused in their language, naming the field by its label; the JSON API
keeps the English message and adds the machine-readable `code`."""

from __future__ import annotations

from typing import Any

import pytest

from kernel import sites, storage, users
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import load_process
from tests.web_helpers import PASSWORD, SECRET, csrf_of, login, make_accounts


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    make_accounts(client)
    load_process(client)
    users.add_user(client, "rita", "admin", PASSWORD, language="ru", actor="test")
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


@pytest.mark.parametrize(("name", "words"), [
    ("rita", "Начало периода: введите дату"),
    ("ada", "Start of the period: enter a date"),
])
async def test_a_bad_date_on_a_page_is_refused_in_the_readers_words(api: Any, name: str, words: str) -> None:
    await login(api, name)
    response = await api.get("/overview", params={"since": "2026-13-01"})
    html = await response.text()
    assert response.status == 400
    assert words in html and "must be" not in html


async def test_a_date_the_storage_cannot_hold_names_its_limits_as_dates(api: Any) -> None:
    await login(api, "rita")
    html = await (await api.get("/overview", params={"until": "1900-01-01"})).text()
    assert "Конец периода: введите дату с 1 янв. 1970" in html and "1970-01-01" not in html


async def test_a_bad_number_in_a_form_is_refused_in_russian(api: Any, site: sites.Site) -> None:
    await login(api, "rita")
    page = await (await api.get("/process")).text()
    response = await api.post("/process/cost", data={"csrf": csrf_of(page), "site": site.name,
                                                      "cost_per_hour": "много", "currency": "RUB",
                                                      "next": "/process#cost"})
    html = await response.text()
    assert "Стоимость часа: введите число" in html and "must be" not in html


async def test_json_keeps_english_and_adds_the_code(api: Any) -> None:
    await login(api, "rita")
    response = await api.get("/api/v1/overview", params={"since": "2026-13-01"})
    body = await response.json()
    assert response.status == 400
    assert body == {"error": "since must be a date like 2026-11-23", "field": "since", "code": "not_a_date"}


@pytest.mark.parametrize(("path", "words"), [
    ("/overview?since=2026-12-01&until=2026-11-01", "Начало периода должно быть не позже его конца."),
    ("/overview?since=2025-01-01&until=2026-11-01", "Выберите период не длиннее 366 дней."),
    ("/overview?team=nowhere", "Команды «nowhere» нет."),
    ("/overview?site=nowhere", "Сайта «nowhere» нет."),
    ("/steps/nowhere", "В процессе нет шага «nowhere»."),
])
async def test_a_refusal_of_a_page_reads_in_russian(api: Any, path: str, words: str) -> None:
    await login(api, "rita")
    response = await api.get(path)
    html = await response.text()
    assert response.status in (400, 403, 404)
    assert words in html, path


async def test_a_director_refused_another_teams_manager_reads_it_in_russian(api: Any, client: storage.Client) -> None:
    users.add_user(client, "dina", "director", PASSWORD, teams=("north",), language="ru", actor="test")
    await login(api, "dina")
    response = await api.get("/managers/m3")
    assert response.status == 403
    assert "Показатели этого менеджера недоступны вашей учётной записи." in await response.text()


async def test_an_unknown_drawdown_is_said_in_words_without_its_id(api: Any) -> None:
    await login(api, "rita")
    missing = "3f2b8c1e-5d4a-4f7e-9c61-0a8b7d6e5f40"
    response = await api.get(f"/drawdowns/{missing}")
    html = await response.text()
    assert response.status == 404
    main = html.split("<main")[1].split("</main>")[0]
    assert "Такой просадки нет" in main and missing not in main


async def test_a_coaching_assignment_names_the_team_by_its_title(api: Any, client: storage.Client,
                                                                   settings: Settings) -> None:
    from datetime import timedelta

    import coaching
    from coaching.lifecycle import Target
    from kernel import teams
    from tests.coaching_helpers import today

    teams.add_team(client, "crm", "east", "Восток", actor="test")
    teams.assign(client, "crm", "east", ["m3"], actor="test")
    ada = next(u for u in users.list_users(client) if u.name == "ada")
    made = coaching.assign(client, settings, ada, site="crm", manager="m3", step="offer", kind="course",
                           course_id=coaching.add_course(client, ada, site="crm", title="Основы предложения",
                                                         steps=["offer"], self_paced=True).course_id,
                           due=today() + timedelta(days=7), target=Target(240_000, 30))
    await login(api, "ada")
    html = await (await api.get(f"/coaching/assignments/{made.assignment_id}")).text()
    assert "· Восток" in html and "· east<" not in html
    assert (await api.get("/process", params={"site": "nowhere"})).status == 404  # a bad ?site= is still refused
