"""The manager page, "My figures" and the step page say the latest analysis' verdict on every pair in
the shared words (_verdict.html), with what it means: a slow pair inside the band is slower than its
teammates, a drawdown runs since (or at least since) a day, a pair on watch or on track above the
reference loses no time. Their JSON twins carry the same fields as `stepwatch stats --json`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from dashboards.i18n import Translator
from kernel import sites, storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import BANDS, TODAY, load_process, set_bands, stats_row, store_pair_stats
from tests.web_helpers import SECRET, login, make_accounts

BEGAN = TODAY - timedelta(days=20)
SINCE_DATA = TODAY - timedelta(days=90)


def row(manager: str, team: str, step: str, median_ms: float, status: str, *, lost: float, above: float,
        peers: dict[str, int] | None = None, start: Any = None, at_least: bool | None = None,
        flag_kind: str | None = None) -> dict[str, Any]:
    """A row as analysis_run.stats_rows makes it (the contract the pages read)."""
    return {**stats_row("crm", team, manager, step, median_ms, n=40, band=BANDS[step]), "status": status,
            "minutes_lost_per_week": lost, "minutes_above_reference_per_week": above, "peers": peers,
            "start_date": start and start.isoformat(), "start_at_least": at_least,
            "flag_id": flag_kind and f"flag-{manager}-{step}", "flag_kind": flag_kind}


ROWS = [
    # m1: slow on the offer inside the band (180 s, max 240 s), by the peer rule; on track above the reference on needs
    row("m1", "north", "offer", 180_000, "slow", lost=30.0, above=30.0, peers={"slower_than": 5, "of": 5},
        start=BEGAN, at_least=False, flag_kind="slow"),
    row("m1", "north", "needs", 110_000, "ok", lost=0.0, above=12.0, peers={"slower_than": 1, "of": 1}),
    # m2: on watch on the offer; slow above the maximum on needs, in a team-wide drawdown older than the data
    row("m2", "north", "offer", 170_000, "watch", lost=0.0, above=8.0, peers={"slower_than": 4, "of": 5}),
    row("m2", "north", "needs", 250_000, "slow", lost=44.0, above=44.0, peers={"slower_than": 1, "of": 1},
        start=SINCE_DATA, at_least=True, flag_kind="systemic"),
    # m3: too fast on the offer (possible skipped work: no time lost)
    row("m3", "south", "offer", 40_000, "fast", lost=0.0, above=0.0, start=SINCE_DATA, at_least=True,
        flag_kind="fast"),
    # m3 on track on needs, 5% above the reference: under the materiality threshold, so not worth a sentence
    row("m3", "south", "needs", 94_500, "ok", lost=0.0, above=1.5),
]


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    make_accounts(client)
    load_process(client)
    set_bands(client)
    store_pair_stats(client, "crm", ROWS, TODAY - timedelta(days=13), TODAY)
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


def row_of(html: str, label: str) -> str:
    """The table row whose heading cell holds `label` (the first one)."""
    for tr in re.findall(r"<tr>.*?</tr>", html, re.S):
        if re.search(r'<th scope="row">.*?' + re.escape(label), tr, re.S):
            return tr
    raise AssertionError(f"no row for {label!r}")


def time_lost(tr: str) -> str:
    return re.search(r'<td class="num time-lost">(.*?)</td>', tr, re.S).group(1)  # type: ignore[union-attr]


def text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))


FIELDS = ("status", "minutes_lost_per_week", "minutes_above_reference_per_week", "peers", "start_date",
          "start_at_least", "flag_kind")


def carried(page_row: dict[str, Any], stored: dict[str, Any]) -> None:
    assert {k: page_row[k] for k in FIELDS} == {k: stored[k] for k in FIELDS}


async def test_the_manager_page_says_each_verdict_with_what_it_means(api: Any) -> None:
    en = Translator("en")
    await login(api, "ada")
    data = await (await api.get("/api/v1/managers/m1?site=crm")).json()
    steps = {s["step"]: s for s in data["steps"]}
    carried(steps["offer"], ROWS[0])
    carried(steps["needs"], ROWS[1])
    assert steps["offer"]["inside_band"] is True
    html = await (await api.get("/managers/m1?site=crm")).text()
    offer = text(row_of(html, "Offer"))
    assert "slow" in offer and "inside the band, slower than 5 of 5 teammates" in offer
    assert text(f"since {en.date(BEGAN)}") in offer and "at least" not in offer
    assert time_lost(row_of(html, "Offer")) == "<strong>30</strong>"  # time lost a week
    assert 'class="verdict-badge slow"' in row_of(html, "Offer")
    assert 'class="mark within"' not in row_of(html, "Offer")  # no green "within the band" beside a slow verdict
    needs = row_of(html, "Needs assessment")
    assert "on track" in text(needs) and "12 min a week above the reference (not a drawdown)" in text(needs)
    assert time_lost(needs) == "–"  # on track: no time lost shown, only the minutes above the reference
    m2 = await (await api.get("/managers/m2?site=crm")).text()
    watch = text(row_of(m2, "Offer"))
    assert "watch" in watch and "drifting toward the maximum, not a drawdown yet" in watch
    assert "8 min a week above the reference (not a drawdown)" in watch and "slower than" not in watch
    systemic = text(row_of(m2, "Needs assessment"))
    assert text(f"at least since {en.date(SINCE_DATA)}") in systemic and "part of a team-wide drawdown" in systemic
    assert "slower than" not in systemic  # above the maximum: the band says it, not the peers
    near = text(row_of(await (await api.get("/managers/m3?site=crm")).text(), "Needs assessment"))
    assert "on track" in near and "above the reference" not in near


async def test_my_figures_say_the_same_words_in_the_accounts_language(api: Any) -> None:
    await login(api, "max")  # m1, in English
    mine = await (await api.get("/api/v1/me?site=crm")).json()
    carried(next(s for s in mine["steps"] if s["step"] == "offer"), ROWS[0])
    html = await (await api.get("/me?site=crm")).text()
    assert "inside the band, slower than 5 of 5 teammates" in text(row_of(html, "Offer"))
    api.session.cookie_jar.clear()
    await login(api, "sam")  # m3, in Russian
    ru = Translator("ru")
    mine = await (await api.get("/api/v1/me?site=crm")).json()
    carried(next(s for s in mine["steps"] if s["step"] == "offer"), ROWS[4])
    fast = text(row_of(await (await api.get("/me?site=crm")).text(), "Offer"))
    assert "слишком быстро" in fast and "возможно, пропущена работа" in fast
    assert text(f"как минимум с {ru.date(SINCE_DATA)}") in fast
    details = (await (await api.get("/me?site=crm")).text()).split('id="summary-heading"')[1]  # the full table
    assert time_lost(row_of(details, "Offer")) == "–"  # a fast pair loses none


async def test_the_step_page_says_every_managers_verdict(api: Any) -> None:
    await login(api, "ada")
    data = await (await api.get("/api/v1/steps/offer?site=crm")).json()
    managers = {m["manager"]: m for m in data["managers"]}
    for stored in (ROWS[0], ROWS[2], ROWS[4]):
        carried(managers[stored["manager"]], stored)
    html = await (await api.get("/steps/offer?site=crm")).text()
    assert "inside the band, slower than 5 of 5 teammates" in text(row_of(html, "m1"))
    assert 'class="mark within"' not in row_of(html, "m1")
    watch = text(row_of(html, "m2"))
    assert "watch" in watch and "8 min a week above the reference (not a drawdown)" in watch
    assert "too fast" in text(row_of(html, "m3")) and "possible skipped work" in text(row_of(html, "m3"))
    csv = await (await api.get("/steps/offer?site=crm&format=csv")).text()
    assert "minutes_above_reference_per_week" in csv.splitlines()[0]
