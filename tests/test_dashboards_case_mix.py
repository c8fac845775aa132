"""The drawdown page says how the mix of clients was accounted for: one sentence with the shares and the
excess with and without the adjustment, the kinds of client by their titles, never their keys, in English
and Russian; the JSON twin's `case_mix` keeps the analysis' figures; a site without attributes shows none."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from markupsafe import escape

from analysis.strata import case_mix
from kernel import managers, processes, storage
from kernel.settings import Settings
from stepwatch.analysis_run import case_mix_json
from stepwatch.app import create_app
from tests.coaching_helpers import EXAMPLE, build_org, today
from tests.coaching_helpers import sign_in as login
from tests.dashboard_data import make_flag, stats_row, store_pair_stats
from tests.web_helpers import SECRET

DECLARED = EXAMPLE.read_text() + """
[attributes]
segment = ["vip", "regular"]

[value_titles.segment]
vip = "VIP"
regular = "Regular"
"""


def mixed_row() -> dict[str, Any]:
    """m-1's row as a like-for-like run stores it: 50% VIP against 15% for the rest of the team, a VIP
    session 1.6 times as long; the median 4.3 min as measured, 3.3 for the team's mix (reference 2)."""
    raw = np.array([200_000.0] * 5 + [320_000.0] * 5)
    adjusted = np.array([200_000.0] * 10)
    mix = case_mix(raw, adjusted, ["", "regular", "vip"], np.array([0, 5, 5]), np.array([5, 80, 15]),
                   [1.0, 1.0, 1.6], reference_ms=120_000, window_days=14)
    row = stats_row("crm", "north", "m-1", "offer", 200_000, n=10)
    row["case_mix"] = case_mix_json(mix, ("segment",))
    return row


def visible_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.split("<main", 1)[-1]))


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: Any) -> Any:
    build_org(client, site.name)
    managers.set_manager(client, "crm", "m-1", name="Анна Петрова", actor="test")
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


async def test_the_drawdown_page_says_how_the_mix_was_accounted_for(api: Any, client: storage.Client) -> None:
    processes.load(client, processes.parse(DECLARED, "crm"), actor="test")
    row = mixed_row()
    store_pair_stats(client, "crm", [row], today() - timedelta(days=13), today())
    flag = make_flag(client, "crm", manager="m-1", step="offer", median_ms=200_000)
    token = await login(api, "dana")

    data = await (await api.get(f"/api/v1/drawdowns/{flag.flag_id}")).json()
    mix = data["case_mix"]
    assert mix == row["case_mix"] and mix["main"] == {"segment": "vip"} and mix["method"] == "van_elteren"
    vip = next(s for s in mix["strata"] if s["attributes"] == {"segment": "vip"})
    assert (vip["manager_share"], vip["team_share"], vip["factor"]) == (0.5, 0.15, 1.6)

    html = await (await api.get(f"/drawdowns/{flag.flag_id}")).text()
    # (260 - 120) s x 10 sessions in 2 weeks = 11.7 min a week; (200 - 120) s: 6.7
    said = ("Анна Петрова serves 50% VIP clients against 15% for the rest of the team; after accounting for that, "
            "the excess over the reference is 7 min a week instead of 12 min.")
    assert str(escape(said)) in html, re.findall(r'case-mix-sentence">([^<]*)<', html)
    text = visible_text(html)
    assert "Compared like with like" in text and "× 1.6" in text and "Not marked" in text
    assert "vip" not in text and "regular" not in text  # the titles, never the keys

    await api.post("/account/language", data={"language": "ru", "csrf": token})
    html = await (await api.get(f"/drawdowns/{flag.flag_id}")).text()
    said = ("Анна Петрова обслуживает 50 % клиентов «VIP», остальная команда — 15 %; с поправкой на это "
            "превышение над эталоном — 7 мин в неделю вместо 12 мин.")
    assert str(escape(said)).replace("\xa0", " ") in html.replace("\xa0", " ")
    assert "Сравнение с учётом клиентов" in html and "Compared like with like" not in html


async def test_a_flag_of_a_site_without_attributes_has_no_case_mix(api: Any, client: storage.Client) -> None:
    store_pair_stats(client, "crm", [stats_row("crm", "north", "m-1", "offer", 200_000, n=30)],
                     today() - timedelta(days=13), today())
    flag = make_flag(client, "crm", manager="m-1", step="offer", median_ms=200_000)
    await login(api, "dana")
    data = await (await api.get(f"/api/v1/drawdowns/{flag.flag_id}")).json()
    assert data["case_mix"] is None
    html = await (await api.get(f"/drawdowns/{flag.flag_id}")).text()
    assert 'class="case-mix"' not in html


def test_a_kind_the_team_has_too_few_sessions_of_is_said_as_not_scaled() -> None:
    from dashboards.case_mix import case_mix_view
    from dashboards.i18n import Translator

    mix = {"minutes_above_reference_per_week": 71.0, "adjusted_minutes_above_reference_per_week": 71.0,
           "median_ms": 300_000.0, "adjusted_median_ms": 300_000.0, "main": None, "method": "van_elteren",
           "strata": [{"attributes": {"segment": "vip"}, "manager_sessions": 28, "manager_share": 0.67,
                       "team_share": 0.12, "factor": 1.0},
                      {"attributes": {"segment": "regular"}, "manager_sessions": 14, "manager_share": 0.33,
                       "team_share": 0.88, "factor": 0.94}]}
    process = processes.parse(DECLARED, "crm")
    said = case_mix_view(Translator("en"), mix, process, "Anna")
    assert said is not None and said["sentence"] == (
        "Anna serves 67% VIP clients against 12% for the rest of the team, but the team has too few sessions of "
        "that kind on this step to tell how long they take, so they are compared as they are: the excess over the "
        "reference is 71 min a week.")
    assert [r["kind"] for r in said["rows"]] == ["VIP", "Regular"]
