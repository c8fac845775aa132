"""The flow page: the ClickHouse reader agrees with analysis/paths.py on the same visits, the page's
JSON twin, HTML and CSV say the same, the map's layout is stable, and nobody sees a manager or a
team outside their scope (nor, as a manager, their teammates one by one)."""

from __future__ import annotations

import csv
import io
import re
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analysis import paths
from dashboards import flow_figures, flow_svg
from dashboards.i18n import Translator
from kernel import sites, storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import TODAY, load_process, store_events
from tests.web_helpers import SECRET, login, make_accounts

DAYS = 10
# Per manager, the path of every session (step, seconds on it); one session of each a day per entry.
ROUTES: dict[str, list[list[tuple[str, int]]]] = {
    # m1 goes back and forth between the needs and the offer in every session
    "m1": [[("needs", 60), ("offer", 100), ("needs", 40), ("offer", 50), ("closing", 30)]] * 3,
    # m2 goes straight through; one session reloads the needs (two visits in a row are one stay)
    "m2": [[("needs", 70), ("offer", 90), ("closing", 30)]] * 2 + [[("needs", 30), ("needs", 40), ("offer", 90),
                                                                    ("closing", 30)]],
    "m3": [[("needs", 50), ("products", 80), ("offer", 60), ("closing", 20)]] * 2,
}


def visit_events(manager: str, session: str, start: datetime, route: list[tuple[str, int]]
                 ) -> tuple[list[dict[str, Any]], list[paths.Visit]]:
    events, plain = [], []
    clock = start
    for step, seconds in route:
        ms = seconds * 1000 + len(session) % 7 * 100
        at = int(clock.timestamp() * 1000)
        visit_id = str(uuid.uuid4())
        base = {"type": "visit", "visit_id": visit_id, "manager": manager, "session_id": session, "process": "sales",
                "step": step, "started_at": at, "idle_ms": 1000, "hidden_ms": 5000}
        # a checkpoint, then the final report: the `visits` view keeps the latest
        events += [{**base, "seq": 0, "active_ms": ms // 2}, {**base, "seq": 1, "active_ms": ms}]
        plain.append(paths.Visit(session, manager, step, at, ms + 1000))  # visible time: active + idle
        clock += timedelta(seconds=seconds + 20)
    return events, plain


def fill(client: storage.Client, settings: Settings) -> list[paths.Visit]:
    events, plain = [], []
    for back in range(1, DAYS + 1):
        day = TODAY - timedelta(days=back)
        for manager, routes in ROUTES.items():
            for i, route in enumerate(routes):
                start = datetime(day.year, day.month, day.day, 9 + i, tzinfo=UTC)
                e, p = visit_events(manager, f"{manager}-{back}-{i}", start, route)
                events += e
                plain += p
    for chunk in range(0, len(events), 400):
        store_events(client, settings, "crm", events[chunk:chunk + 400])
    storage.refresh_session_steps(client, "crm")  # what the analysis does before the page reads session_paths
    return plain


@pytest.fixture
def visits(client: storage.Client, settings: Settings, site: sites.Site) -> list[paths.Visit]:
    make_accounts(client)
    load_process(client)
    return fill(client, settings)


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, visits: list[paths.Visit]) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


def test_the_reader_agrees_with_the_paths_module_on_the_same_visits(client: storage.Client,
                                                                    visits: list[paths.Visit]) -> None:
    since, until = TODAY - timedelta(days=DAYS), TODAY
    expected = paths.summarise(visits)
    found = flow_figures.flow(client, "crm", since, until, managers=None)
    rows = found["variants"]
    together = {r["path"]: (r["sessions"], r["median_ms"]) for r in rows if r["manager"] is None}
    assert together == {v.path: (v.sessions, pytest.approx(v.median_ms)) for v in expected.variants}
    assert ("needs", "needs", "offer", "closing") not in together  # a reload is one stay
    mine = {r["path"]: r["sessions"] for r in rows if r["manager"] == "m1"}
    assert mine == {("needs", "offer", "needs", "offer", "closing"): 3 * DAYS}
    moves = found
    edges = {(e["source"], e["target"]): (e["transitions"], e["median_ms"]) for e in moves["edges"]
             if e["manager"] is None}
    assert edges == {(e.source, e.target): (e.transitions, pytest.approx(e.median_ms)) for e in expected.edges}
    back = {s["step"]: s["median_return_ms"] for s in moves["steps"] if s["manager"] is None and s["returns"]}
    assert back == pytest.approx(expected.return_ms)
    # the scope is bound: a director's list reads only those managers; an empty list reads nobody
    only = flow_figures.flow(client, "crm", since, until, managers=["m3"], manager="m3")
    assert {r["manager"] for key in ("variants", "edges", "steps") for r in only[key]} == {"m3", None}
    assert {(e["source"], e["target"]) for e in only["edges"] if e["manager"] == "m3"} == {
        ("needs", "products"), ("products", "offer"), ("offer", "closing")}
    assert flow_figures.flow(client, "crm", since, until, managers=[]) == {"variants": [], "edges": [], "steps": []}
    # one manager among their team: their edges and steps are what a map of them alone shows, and the
    # steps' returns together are the whole group's
    team = ["m1", "m2", "m3"]
    one = flow_figures.flow(client, "crm", since, until, managers=team, manager="m1")
    alone = flow_figures.flow(client, "crm", since, until, managers=["m1"])
    group = flow_figures.flow(client, "crm", since, until, managers=team)
    assert {r["manager"] for key in ("edges", "steps") for r in one[key]} == {"m1", None}
    assert sorted(repr({**e, "manager": None}) for e in one["edges"] if e["manager"] == "m1") \
        == sorted(map(repr, alone["edges"]))
    assert sorted(repr({**s, "manager": None}) for s in one["steps"] if s["manager"] == "m1") \
        == sorted(map(repr, alone["steps"]))
    def returns(rows: list[dict[str, Any]]) -> dict[str, tuple[int, int, float | None]]:
        return {s["step"]: (s["stays"], s["returns"], s["median_return_ms"]) for s in rows if s["manager"] is None}
    assert returns(one["steps"]) == returns(group["steps"])
    assert {(v["manager"], v["path"]) for v in one["variants"]} == {
        (v["manager"], v["path"]) for v in group["variants"] if v["manager"] is not None}


async def test_a_team_its_paths_rework_and_ping_pong(api: Any) -> None:
    await login(api, "ada")
    data = await (await api.get("/api/v1/flow?site=crm&team=north")).json()
    assert data["sessions"] == 6 * DAYS and data["reworked_sessions"] == 3 * DAYS and data["rework_rate"] == 0.5
    assert data["variants"][0]["path"] == ["needs", "offer", "closing"] and data["variants"][0]["sessions"] == 30
    assert data["variants"][1]["rework"] is True and data["variants"][1]["titles"][0] == "Needs assessment"
    assert data["ping_pong"] == [{"source": "needs", "target": "offer", "sessions": 30, "share": 0.5,
                                  "teammates_share": None}]
    steps = {s["step"]: s for s in data["steps"]}
    assert [s["step"] for s in data["steps"]] == ["needs", "offer", "closing"]  # the process's order
    assert steps["needs"]["rate"] == 0.5 and steps["closing"]["rate"] == 0
    # m1 reworks every session, m2 none: m1's minutes are their extra returns at a return's median time
    by_manager = {m["manager"]: m for m in data["managers"]}
    assert by_manager["m1"]["rework_rate"] == 1.0 and by_manager["m1"]["teammates_rework_rate"] == 0.0
    returns = steps["needs"]["median_return_ms"] + steps["offer"]["median_return_ms"]
    assert by_manager["m1"]["rework_minutes_per_week"] == pytest.approx(30 * returns / 60_000 / (30 / 7), abs=0.05)
    assert by_manager["m2"]["rework_minutes_per_week"] < 0
    assert data["managers"][0]["manager"] == "m1"  # the costliest first
    html = await (await api.get("/flow?site=crm&team=north")).text()
    assert "60 service sessions" in html and "50% of them came back" in html
    svg = re.search(r"<svg .*?</svg>", html, re.S)
    assert svg and ET.fromstring(svg.group(0)).get("role") == "img"
    assert "Needs assessment → Offer: 90 times" in svg.group(0)  # each edge says itself to a screen reader
    assert "<caption>Transitions between steps" in html  # the map as a table
    assert 'href="/flow?site=crm&amp;manager=m1"' in html
    exported = await api.get("/flow?site=crm&team=north&format=csv&table=edges")
    rows = list(csv.DictReader(io.StringIO(await exported.text())))
    assert {(r["source"], r["target"]): int(r["transitions"]) for r in rows} == {
        ("needs", "offer"): 2 * 30 + 30, ("offer", "closing"): 30 + 30, ("offer", "needs"): 30}


async def test_a_manager_against_their_teammates(api: Any) -> None:
    await login(api, "ada")
    data = await (await api.get("/api/v1/flow?site=crm&manager=m1")).json()
    assert data["manager"] == "m1" and data["team"] == "north" and data["compared_with_teammates"] is True
    assert data["sessions"] == 3 * DAYS
    edges = {(e["source"], e["target"]): e for e in data["edges"]}
    assert edges[("offer", "needs")]["deviation"] == "more" and edges[("offer", "needs")]["teammates_per_session"] == 0
    assert edges[("needs", "offer")]["deviation"] == "more"  # twice a session against once
    assert edges[("offer", "closing")]["deviation"] is None
    cost = data["rework_cost"]
    assert cost["teammates_rework_rate"] == 0.0 and cost["minutes_per_week"] > 0
    assert {c["step"] for c in cost["steps"]} == {"needs", "offer", "closing"}
    assert cost["minutes_per_week"] == pytest.approx(sum(c["minutes_per_week"] for c in cost["steps"]), abs=0.2)
    assert data["managers"] == []
    html = await (await api.get("/flow?site=crm&manager=m1")).text()
    assert "rework costs" in html and "▲" in html and 'class="flow-edge flow-more"' in html
    assert 'href="/managers/m1?site=crm"' in html
    # the cost is priced at the team's return time, the table of returns shows the manager's own: the
    # two columns say which they are, so their figures do not seem to disagree
    team = await (await api.get("/api/v1/flow?site=crm&team=north")).json()
    team_return = {s["step"]: s["median_return_ms"] for s in team["steps"]}
    assert {c["step"]: c["median_return_ms"] for c in cost["steps"]} == {
        step: team_return[step] for step in ("needs", "offer", "closing")}
    assert "Return visit, team’s median" in html and "Return visit, median" in html


async def test_a_manager_sees_only_themselves_and_no_teammate_one_by_one(api: Any) -> None:
    await login(api, "max")  # a manager: m1 of north, whose one teammate is fewer than the peer group minimum
    data = await (await api.get("/api/v1/flow?site=crm")).json()
    assert data["manager"] == "m1" and data["sessions"] == 3 * DAYS
    assert data["compared_with_teammates"] is False and data["rework_cost"] is None
    assert all(e["teammates_per_session"] is None for e in data["edges"]) and data["manager_options"] == []
    assert (await api.get("/api/v1/flow?site=crm&manager=m2")).status == 403
    assert (await api.get("/api/v1/flow?site=crm&team=north")).status == 403
    html = await (await api.get("/flow?site=crm")).text()
    assert "Not compared with teammates" in html


async def test_a_director_sees_the_teams_they_lead_only(api: Any) -> None:
    await login(api, "dora")  # leads north
    data = await (await api.get("/api/v1/flow?site=crm")).json()
    assert data["sessions"] == 6 * DAYS and {m["manager"] for m in data["managers"]} == {"m1", "m2"}
    assert {m["manager"] for m in data["manager_options"]} == {"m1", "m2"}
    assert (await api.get("/api/v1/flow?site=crm&team=south")).status == 403
    assert (await api.get("/api/v1/flow?site=crm&manager=m3")).status == 403
    assert (await api.get("/api/v1/flow?site=crm&team=nowhere")).status == 403
    assert (await api.get("/api/v1/flow?site=crm&since=2026-02-10&until=2026-02-01")).status == 400
    assert (await api.get("/api/v1/flow?site=crm&since=2024-01-01&until=2026-02-01")).status == 400


async def test_refusals_are_said_in_the_readers_language(api: Any) -> None:
    await login(api, "sam")  # a Russian manager account
    page = await api.get("/flow?site=crm&team=north")
    assert page.status == 403 and "Команда «north» не входит" in await page.text()
    page = await api.get("/flow?site=crm&since=2026-02-10&until=2026-02-01")
    assert page.status == 400 and "Начало периода должно быть не позже его конца" in await page.text()


async def test_a_trainer_without_trainees_sees_nobody(api: Any) -> None:
    await login(api, "tom")
    data = await (await api.get("/api/v1/flow?site=crm")).json()
    assert data["sessions"] == 0 and data["edges"] == [] and data["managers"] == []
    assert (await api.get("/api/v1/flow?site=crm&manager=m1")).status == 403


async def test_the_page_in_russian(api: Any) -> None:
    await login(api, "sam")  # m3 of south, in Russian
    html = await (await api.get("/flow?site=crm")).text()
    assert "Пути и возвраты" in html and "20 сессий обслуживания" in html
    assert "Карта процесса" in html and "Needs assessment → Products" not in html.split("<svg")[0]


def test_the_layout_is_stable_steps_in_process_order_and_returns_on_the_left() -> None:
    _ = Translator("en")
    nodes = [flow_svg.Node(k, k.title(), 10, 60_000) for k in ("a", "b", "c", "d")]
    arrows = [flow_svg.Arrow("a", "b", 10, 1000), flow_svg.Arrow("b", "d", 4, 2000),
              flow_svg.Arrow("c", "a", 3, 3000, "more")]
    drawn = ET.fromstring(flow_svg.flow_map(_, nodes=nodes, arrows=arrows, label="map"))
    ns = {"s": flow_svg.SVG_NS}
    boxes = drawn.findall(".//s:g[@class='flow-step']/s:rect", ns)
    ys = [float(b.get("y", 0)) for b in boxes]
    assert ys == sorted(ys) and len(set(ys)) == 4  # one row per step, top to bottom
    left = float(boxes[0].get("x", 0))
    right = left + flow_svg.BOX_W
    edges = drawn.findall(".//s:g[@class]", ns)
    paths_d = {e.findtext("s:title", namespaces=ns): e.find("s:path", ns).get("d") for e in edges
               if e.get("class", "").startswith("flow-edge")}
    back = next(d for t, d in paths_d.items() if t.startswith("C → A"))
    skip = next(d for t, d in paths_d.items() if t.startswith("B → D"))
    assert min(float(x.split(",")[0]) for x in re.findall(r"[-\d.]+,[-\d.]+", back)) < left  # goes back on the left
    assert max(float(x.split(",")[0]) for x in re.findall(r"[-\d.]+,[-\d.]+", skip)) > right  # skips on the right
    assert "much more often than teammates" in next(t for t in paths_d if t.startswith("C → A"))
    # the same steps with other data stand where they stood
    again = ET.fromstring(flow_svg.flow_map(_, nodes=nodes, arrows=arrows[:1], label="map"))
    assert [float(b.get("y", 0)) for b in again.findall(".//s:g[@class='flow-step']/s:rect", ns)] == ys


async def test_the_manager_and_drawdown_pages_link_to_the_managers_paths(api: Any, client: storage.Client) -> None:
    from tests.dashboard_data import make_flag

    flag = make_flag(client, "crm", manager="m1", step="offer")
    await login(api, "dora")
    manager_html = await (await api.get("/managers/m1?site=crm")).text()
    assert 'href="/flow?site=crm&amp;manager=m1"' in manager_html and "Paths and rework of" in manager_html
    drawdown_html = await (await api.get(f"/drawdowns/{flag.flag_id}")).text()
    evidence = drawdown_html.split('id="evidence"', 1)[1]
    assert 'href="/flow?site=crm&amp;manager=m1"' in evidence.split("</figure>", 1)[0]


async def test_a_team_is_named_by_its_title(api: Any, client: storage.Client) -> None:
    from kernel import teams

    teams.add_team(client, "crm", "east", "East desk", actor="test")
    teams.assign(client, "crm", "east", ["m3"], actor="test")
    await login(api, "ada")
    data = await (await api.get("/api/v1/flow?site=crm&team=east")).json()
    assert data["team"] == "east" and data["team_title"] == "East desk"
    html = await (await api.get("/flow?site=crm&team=east")).text()
    assert "<h1>Paths and rework: East desk</h1>" in html and "<td>East desk</td>" in html


# The read the flow page made before session_paths (migration 0024): every visit of the range put in
# order per session. The pre-aggregate must give the page the same figures.
RAW_SESSIONS = """
    SELECT manager, arrayFilter((x, k) -> k, s0, keep) AS steps, arrayFilter((x, k) -> k, t0, keep) AS starts,
           arrayMap(x -> arraySum(x), arraySplit((x, k) -> k, d0, keep)) AS ms
    FROM (
        SELECT manager, arraySort(groupArray((toUnixTimestamp64Milli(started_at), step, {column}))) AS v,
               v.1 AS t0, v.2 AS s0, v.3 AS d0,
               arrayMap((s, p) -> s != p, s0, arrayPushFront(arrayPopBack(s0), '')) AS keep
        FROM visits
        WHERE site = {{site:String}} AND toDate(started_at) >= {{since:Date}} AND toDate(started_at) <= {{until:Date}}
          AND ({{everyone:Bool}} OR manager IN {{managers:Array(String)}})
        GROUP BY manager, session_id
    )
"""
RAW_METRICS = {"visible": "toUInt64(active_ms) + idle_ms", "active": "toUInt64(active_ms)",
               "wall": "toUInt64(active_ms) + idle_ms + hidden_ms"}


def raw_read(patch: pytest.MonkeyPatch) -> None:
    raw = {"source": f"({RAW_SESSIONS})", "steps": "CAST(steps, 'Array(String)')", "ms": "ms", "where": ""}
    patch.setattr(flow_figures, "_ONE_ROW", raw)
    patch.setattr(flow_figures, "_JOINED", {**raw, "where": "WHERE 0"})  # every session is in the raw read
    patch.setattr(flow_figures, "METRIC_COLUMNS", RAW_METRICS)


def visit(manager: str, session: str, step: str, at: datetime, active_s: int, *, idle_s: int = 3,
          hidden_s: int = 0) -> list[dict[str, Any]]:
    """One visit as the tracker reports it: a checkpoint, then the final report."""
    base = {"type": "visit", "visit_id": str(uuid.uuid4()), "manager": manager, "session_id": session,
            "process": "sales", "step": step, "started_at": int(at.timestamp() * 1000), "idle_ms": idle_s * 1000,
            "hidden_ms": hidden_s * 1000}
    return [{**base, "seq": 0, "active_ms": active_s * 500}, {**base, "seq": 1, "active_ms": active_s * 1000}]


def midnight(day: Any, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def awkward(client: storage.Client, settings: Settings, visits: list[paths.Visit]) -> None:
    """Sessions the day rows must join exactly: over midnight with the stay cut there (the same step last
    before it and first after), over midnight with a return after it, visits starting at the same moment
    (ordered by step), and a session running into the first day of the window from the day before."""
    events: list[dict[str, Any]] = []
    for back in (2, 4):
        day, next_day = TODAY - timedelta(days=back), TODAY - timedelta(days=back - 1)
        events += visit("m1", f"late-{back}", "needs", midnight(day, 23, 57), 60, hidden_s=40)
        events += visit("m1", f"late-{back}", "offer", midnight(day, 23, 59), 50)
        events += visit("m1", f"late-{back}", "offer", midnight(next_day, 0, 0, 30), 70, idle_s=9)  # the cut stay
        events += visit("m1", f"late-{back}", "closing", midnight(next_day, 0, 3), 20)
        events += visit("m2", f"return-{back}", "offer", midnight(day, 23, 58), 90)
        events += visit("m2", f"return-{back}", "needs", midnight(next_day, 0, 1), 30, hidden_s=5)
        events += visit("m2", f"return-{back}", "offer", midnight(next_day, 0, 2), 40)
        events += visit("m3", f"tie-{back}", "products", midnight(day, 11), 30)
        events += visit("m3", f"tie-{back}", "needs", midnight(day, 11), 30)  # same moment: "needs" first
        events += visit("m3", f"tie-{back}", "offer", midnight(day, 11, 1), 25)
    first = TODAY - timedelta(days=5)  # the window below starts here: the day before is cut off
    events += visit("m3", "early", "needs", midnight(first - timedelta(days=1), 23, 58), 60)
    events += visit("m3", "early", "offer", midnight(first, 0, 1), 60)
    events += visit("m3", "early", "closing", midnight(first, 0, 3), 60)
    store_events(client, settings, "crm", events)
    storage.refresh_session_steps(client, "crm")


def test_the_pre_aggregate_gives_what_the_visits_give(client: storage.Client, awkward: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """flow() from session_paths equals flow() from every visit in order, in every metric, for a group and
    one manager, over the whole range and a window that cuts a session at its first midnight."""
    windows = [(TODAY - timedelta(days=DAYS), TODAY), (TODAY - timedelta(days=5), TODAY - timedelta(days=2))]
    cases = [(since, until, metric, who, one) for since, until in windows
             for metric in ("visible", "active", "wall")
             for who, one in ((None, None), (["m1", "m2"], None), (["m1"], "m1"), (["m3"], "m3"), (["m1", "m2"], "m2"))]
    found = [flow_figures.flow(client, "crm", s, u, managers=w, metric=m, manager=o) for s, u, m, w, o in cases]
    raw_read(monkeypatch)
    expected = [flow_figures.flow(client, "crm", s, u, managers=w, metric=m, manager=o) for s, u, m, w, o in cases]
    for case, mine, theirs in zip(cases, found, expected, strict=True):
        for key in ("variants", "edges", "steps"):
            assert sorted(map(repr, mine[key])) == sorted(map(repr, theirs[key])), (case, key)
    # the cut stay is one stay, and the session cut at the window's first midnight starts at the offer
    whole = found[0]["variants"]
    assert any(v["manager"] == "m1" and v["path"] == ("needs", "offer", "closing") for v in whole)
    assert any(v["manager"] == "m2" and v["path"] == ("offer", "needs", "offer") for v in whole)
    assert any(v["manager"] == "m3" and v["path"] == ("needs", "products", "offer") for v in whole)
    window = found[len(cases) // 2 + 3]["variants"]  # the short window, visible time, m3 alone
    assert any(v["manager"] == "m3" and v["path"] == ("offer", "closing") for v in window)


async def test_the_page_says_the_same_from_the_pre_aggregate_as_from_the_visits(
        api: Any, awkward: None, monkeypatch: pytest.MonkeyPatch) -> None:
    await login(api, "ada")
    urls = ["/api/v1/flow?site=crm&team=north", "/api/v1/flow?site=crm&manager=m1",
            f"/api/v1/flow?site=crm&since={TODAY - timedelta(days=5)}&until={TODAY - timedelta(days=2)}"]
    pages = [await (await api.get(url)).json() for url in urls]
    raw_read(monkeypatch)
    assert pages == [await (await api.get(url)).json() for url in urls]
    assert pages[0]["sessions"] > 6 * DAYS  # the awkward sessions are in


def test_the_analysis_refresh_keeps_the_paths_up_to_date(client: storage.Client, settings: Settings,
                                                         visits: list[paths.Visit],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The analysis run (its refresh of the daily pre-aggregates) rewrites a day that got a late visit;
    the older rows of the day count for nothing while their delete is on its way."""
    from stepwatch import analysis_run

    day = TODAY - timedelta(days=3)
    store_events(client, settings, "crm", visit("m2", "m2-3-0", "offer", midnight(day, 9, 30), 45))  # a return
    since, until = TODAY - timedelta(days=DAYS), TODAY
    before = flow_figures.flow(client, "crm", since, until, managers=["m2"], manager="m2")
    analysis_run.analyze(client, settings, only_site="crm")
    after = flow_figures.flow(client, "crm", since, until, managers=["m2"], manager="m2")
    assert after != before
    assert any(v["path"] == ("needs", "offer", "closing", "offer") for v in after["variants"] if v["manager"] == "m2")
    # an older refresh's rows of the day, as they stay until their delete is through, count for nothing
    client.command("INSERT INTO session_paths SELECT site, day, manager, session_id, steps, starts, visible_ms, "
                   "active_ms, wall_ms, computed_at - INTERVAL 1 SECOND FROM session_paths "
                   "WHERE site = 'crm' AND manager = 'm2' AND day = {day:Date}", parameters={"day": day})
    again = flow_figures.flow(client, "crm", since, until, managers=["m2"], manager="m2")
    assert sum(v["sessions"] for v in again["variants"] if v["manager"] == "m2") == 3 * DAYS  # no day twice
    raw_read(monkeypatch)
    raw = flow_figures.flow(client, "crm", since, until, managers=["m2"], manager="m2")
    for key in ("variants", "edges", "steps"):
        assert sorted(map(repr, after[key])) == sorted(map(repr, raw[key])) == sorted(map(repr, again[key]))


def test_each_managers_teammates_are_the_team_less_themselves() -> None:
    """The group's table counts each manager's paths once and takes their teammates' as the team's sums less
    their own: the same figures as counting every teammate's paths again for each manager."""
    import random
    from types import SimpleNamespace

    from dashboards.pages import flow as flow_page

    rng = random.Random(7)
    steps = ("needs", "offer", "closing", "products")
    team_of = {f"m{i}": ("north", "south", "west")[i % 3] for i in range(9)}
    team_of.pop("m8")  # one manager in no team
    by_manager = {m: [(tuple(rng.choice(steps) for _ in range(rng.randint(1, 6))), rng.randint(1, 9))
                      for _ in range(rng.randint(1, 8))] for m in [*team_of, "m8"]}
    by_manager["m2"] = [(("needs", "offer"), 3)]  # west is m2 and m5: steps only m5 took
    return_ms = {s: 1000.0 * (i + 1) for i, s in enumerate(steps)}
    found = SimpleNamespace(scope=SimpleNamespace(team_of=team_of), names={})

    def counted_again(manager: str) -> tuple[Any, Any]:
        team = team_of.get(manager, "")
        mates = [(p, n) for m, other in by_manager.items() if m != manager and team_of.get(m, "") == team
                 for p, n in other]
        mine = paths.rework(by_manager[manager])
        cost = paths.rework_cost(mine, paths.rework(mates), return_ms, 30) if mates else None
        total, back = flow_page._rate(mates)
        return (None if cost is None else round(cost.minutes_per_week, 1)), (round(back / total, 4) if total else None)

    rows = flow_page._managers(found, by_manager, return_ms, 30)  # type: ignore[arg-type]
    assert {r["manager"]: (r["rework_minutes_per_week"], r["teammates_rework_rate"]) for r in rows} == {
        m: counted_again(m) for m in by_manager}
    assert any(r["rework_minutes_per_week"] not in (None, 0) for r in rows)
