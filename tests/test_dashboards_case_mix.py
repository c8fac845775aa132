"""The drawdown page says how the mix of clients was accounted for: one sentence with the shares and the
excess with and without the adjustment, the kinds of client by their titles, never their keys, in English
and Russian; the JSON twin's `case_mix` keeps the analysis' figures; a site without attributes shows none."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from html import unescape
from typing import Any

import numpy as np
import orjson
import pytest
from markupsafe import escape

from analysis.strata import case_mix
from kernel import band_versions, managers, processes, storage
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
            "the excess over the reference is 7\xa0min a week instead of 12\xa0min.")
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
        "reference is 71\xa0min a week.")
    assert [r["kind"] for r in said["rows"]] == ["VIP", "Regular"]


def add_mixed_sessions(client: storage.Client, first: date, last: date) -> None:
    """m-1 on the offer every day from `first` to `last`: two VIP sessions of 10 minutes and two regular ones
    of 5, each VIP session's segment on its start event; a VIP session takes twice as long (factor 2), so
    every session takes 5 minutes for the team's mix and the weeks' medians as measured are 7.5 minutes."""
    visits, starts = [], []
    day = first
    while day <= last:
        for k, (segment_, minutes) in enumerate((("vip", 10), ("vip", 10), ("regular", 5), ("regular", 5))):
            session = f"m-1-{day.isoformat()}-{k}"
            at = datetime(day.year, day.month, day.day, 9 + k, tzinfo=UTC)
            visits.append(orjson.dumps({
                "site": "crm", "visit_id": str(uuid.uuid4()), "seq": 0, "final": True, "manager": "m-1",
                "session_id": session, "customer": "c", "process": "sales", "step": "offer",
                "path": "/clients/:customer/offer", "started_at": at.timestamp(), "active_ms": minutes * 60_000,
                "idle_ms": 0, "hidden_ms": 0, "tracker": "test", "source": "test"}))
            starts.append(["crm", str(uuid.uuid4()), session, "start", "m-1", "c", "sales", at, "",
                           {"segment": segment_}, "t"])
        day += timedelta(days=1)
    storage.insert_visits(client, b"\n".join(visits))
    client.insert("session_events", starts, column_names=["site", "event_id", "session_id", "action", "manager",
                                                          "customer", "process", "at", "outcome", "attributes",
                                                          "tracker"])
    storage.refresh_session_steps(client, "crm")


async def test_the_evidence_chart_plots_the_adjusted_medians_the_flag_rests_on(api: Any, client: storage.Client
                                                                               ) -> None:
    processes.load(client, processes.parse(DECLARED, "crm"), actor="test")
    band_versions.add_version(client, "crm", "offer", "", 60_000, 120_000, 240_000, today() - timedelta(days=200),
                              actor="test", reason="test band")
    add_mixed_sessions(client, today() - timedelta(days=27), today() - timedelta(days=1))
    # the analysis' record of it: half the sessions VIP against 10% for the team, factor 2
    raw = np.array([300_000.0] * 28 + [600_000.0] * 28)
    mix = case_mix(raw, np.full(56, 300_000.0), ["regular", "vip"], np.array([28, 28]), np.array([90, 10]),
                   [1.0, 2.0], reference_ms=120_000, window_days=14)
    row = stats_row("crm", "north", "m-1", "offer", 300_000, n=56)
    row.update(status="slow", case_mix=case_mix_json(mix, ("segment",)), p90_ms=360_000)
    store_pair_stats(client, "crm", [row], today() - timedelta(days=13), today())
    flag = make_flag(client, "crm", manager="m-1", step="offer", median_ms=300_000)
    await login(api, "dana")

    data = await (await api.get(f"/api/v1/drawdowns/{flag.flag_id}")).json()
    evidence = data["evidence"]
    assert evidence["adjusted_for_case_mix"] is True
    weeks = [w for w in evidence["weeks"] if w["n"]]
    assert weeks and all(w["manager_median_ms"] == 300_000 for w in weeks)  # the flag's median, every week
    assert all(w["manager_measured_median_ms"] == 450_000 for w in weeks)  # as measured: kept, not drawn
    assert data["case_mix"]["adjusted_median_ms"] == data["flag"]["median_ms"] == 300_000
    assert "median on Offer is 5.0 min" in data["explanation"].replace("\xa0", " ")

    html = (await (await api.get(f"/drawdowns/{flag.flag_id}")).text()).replace("\xa0", " ")
    charts_drawn = re.findall(r'<svg[^>]*class="chart evidence"[^>]*aria-label="([^"]*)".*?</svg>', html, re.S)
    assert len(charts_drawn) == 2
    for chart in re.findall(r'<svg[^>]*class="chart evidence".*?</svg>', html, re.S):
        said = re.findall(r"<title>Анна Петрова: ([^<]*)</title>", chart)
        assert said and all("median 5.0 min" in s for s in said), said  # the manager's points: 5 minutes
        assert "7.5 min" not in chart
        assert "adjusted for the mix of clients" in chart  # the summary a screen reader reads says so
    text = unescape(visible_text(html))
    assert "The manager's times are adjusted for the mix of clients" in text
    # the measured median is named once: in the case-mix section
    assert text.count("7.5 min") == 1, [text[m.start() - 200:m.end()] for m in re.finditer("7.5 min", text)]
    assert "Median session: 7.5 min as measured, 5.0 min for the team's mix of clients." in text


async def test_without_an_adjustment_the_chart_plots_the_times_as_measured(api: Any, client: storage.Client
                                                                           ) -> None:
    processes.load(client, processes.parse(DECLARED, "crm"), actor="test")
    add_mixed_sessions(client, today() - timedelta(days=13), today() - timedelta(days=1))
    raw = np.array([300_000.0] * 14 + [600_000.0] * 14)
    mix = case_mix(raw, raw, ["regular", "vip"], np.array([14, 14]), np.array([90, 10]), [1.0, 1.0],
                   reference_ms=120_000, window_days=14)  # the team has too few VIP sessions to scale by
    row = stats_row("crm", "north", "m-1", "offer", 450_000, n=28)
    row.update(status="slow", case_mix=case_mix_json(mix, ("segment",)))
    store_pair_stats(client, "crm", [row], today() - timedelta(days=13), today())
    flag = make_flag(client, "crm", manager="m-1", step="offer", median_ms=450_000)
    await login(api, "dana")
    data = await (await api.get(f"/api/v1/drawdowns/{flag.flag_id}")).json()
    assert data["evidence"]["adjusted_for_case_mix"] is False
    assert all("manager_measured_median_ms" not in w for w in data["evidence"]["weeks"])
    html = await (await api.get(f"/drawdowns/{flag.flag_id}")).text()
    assert "adjusted for the mix of clients" not in html
