"""A flag's reasons and its history read in the viewer's language, whatever language the analysis wrote in:
the stored English stays in the JSON twin, the page says the figures in words."""

from __future__ import annotations

from typing import Any

from kernel import sites, storage, teams, users
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import make_flag
from tests.web_helpers import PASSWORD, SECRET, login

ENGLISH = "median 400 s is above the max band 240 s"


async def page_of(aiohttp_client: Any, settings: Settings, client: storage.Client, language: str) -> tuple[str, Any]:
    teams.add_team(client, "crm", "north", actor="test")
    teams.assign(client, "crm", "north", ["m1"], actor="test")
    flag = make_flag(client, "crm", manager="m1", median_ms=400_000)
    client.command("ALTER TABLE flags UPDATE reasons = {r:Array(String)} WHERE flag_id = {id:UUID}",
                   parameters={"r": [ENGLISH, "in 4 of the last 4 weeks", "began on 2026-11-09"], "id": flag.flag_id})
    users.add_user(client, "reader", "admin", PASSWORD, language=language, actor="test")
    api = await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))
    await login(api, "reader")
    html = await (await api.get("/managers/m1?site=crm")).text()
    data = await (await api.get("/api/v1/managers/m1?site=crm")).json()
    return html, data


async def test_a_russian_reader_reads_the_reasons_in_russian(aiohttp_client: Any, settings: Settings,
                                                              client: storage.Client, site: sites.Site) -> None:
    html, data = await page_of(aiohttp_client, settings, client, "ru")
    assert "Медиана 6,7\xa0мин выше максимума нормы (4,0\xa0мин)" in html
    assert "Недель с отклонением от эталона за последнее время: 4" in html
    assert "Примерно с" in html
    assert "Анализ обнаружил просадку." in html and "анализ" in html
    for english in (ENGLISH, "began on", "weeks", "analysis:"):
        assert english not in html
    (flag,) = data["flags"]
    assert flag["reasons"][0] == ENGLISH  # the JSON twin keeps the stored text, and the codes with their figures
    assert flag["reason_codes"][:2] == [{"code": "above_max", "median_ms": 400_000.0, "max_ms": 240_000},
                                        {"code": "weeks", "weeks": 4}]
    assert flag["reason_codes"][2]["code"] == "since" and flag["reason_codes"][2]["at_least"] is False


async def test_an_english_reader_reads_the_same_reasons_in_english(aiohttp_client: Any, settings: Settings,
                                                                    client: storage.Client, site: sites.Site) -> None:
    html, _ = await page_of(aiohttp_client, settings, client, "en")
    assert "Median 6.7\xa0min is above the maximum of the band, 4.0\xa0min" in html
    assert "Weeks off the reference lately: 4" in html and "The analysis found the drawdown." in html
    assert ENGLISH not in html
