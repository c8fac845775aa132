"""Step discovery: switched on per site for a limited time (audited); the collector takes only path
patterns and counts while it is on, cleans them again, bounds and rate-limits the reports, and adds
them up per site, pattern and day; the process page lists the most viewed ones with "make this a step"."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from collector import discovery as collector_discovery
from collector import keys
from collector.ratelimit import RateLimiter
from kernel import app_keys, audit, discovery, processes, sites, storage
from kernel.errors import InvalidInput
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import load_process
from tests.test_site_cost import cli
from tests.web_helpers import SECRET, csrf_of, login, make_accounts

ORIGIN = "https://crm.example.com"


# -- the switch ------------------------------------------------------------------------------------


def test_switched_on_for_seven_days_by_default_then_off_audited(client: storage.Client, site: sites.Site) -> None:
    assert discovery.window(client, site.name) is None
    window = discovery.switch_on(client, site.name, actor="ada", reason="find the steps")
    assert timedelta(days=6, hours=23) < window.until - datetime.now(UTC) <= timedelta(days=7)
    assert window.on() and window.set_by == "ada"
    discovery.switch_off(client, site.name, actor="ada", reason="done")
    assert discovery.window(client, site.name) is None
    entries = audit.entries(client, action="discovery.")
    assert [(e.action, e.actor, e.reason) for e in reversed(entries)] == [
        ("discovery.on", "ada", "find the steps"), ("discovery.off", "ada", "done")]
    assert entries[-1].details["days"] == 7


@pytest.mark.parametrize("days", [0, 31, -1])
def test_at_most_thirty_days(client: storage.Client, site: sites.Site, days: int) -> None:
    with pytest.raises(InvalidInput) as raised:
        discovery.switch_on(client, site.name, days, actor="ada")
    assert raised.value.field == "days"
    assert discovery.window(client, site.name) is None


def test_a_window_that_ended_is_off(client: storage.Client, site: sites.Site) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    client.insert("discovery_windows", [[site.name, past, "ada", ""]],
                  column_names=["site", "until", "set_by", "reason"])
    assert discovery.window(client, site.name) is None


def test_cli_switches_on_and_off_and_lists(client: storage.Client, site: sites.Site) -> None:
    load_process(client)
    code, out = cli(client, "process", "discovery", site.name, "--on", "--days", "3", "--reason", "pilot")
    assert code == 0 and "discovery is on until" in out
    discovery.record(client, site.name, {"/reports/:id": 4}, date.today())
    listed = json.loads(cli(client, "process", "discovery", site.name, "--json")[1])
    assert listed["on"] is True and listed["patterns"][0]["pattern"] == "/reports/:id"
    assert listed["patterns"][0]["rule"] == "/reports/*" and listed["patterns"][0]["title"] == "Reports"
    assert "discovery is off" in cli(client, "process", "discovery", site.name, "--off")[1]
    assert [e.action for e in audit.entries(client, action="discovery.")] == ["discovery.off", "discovery.on"]
    with pytest.raises(InvalidInput):
        cli(client, "process", "discovery", site.name, "--on", "--days", "45")


# -- cleaning and titles ---------------------------------------------------------------------------


@pytest.mark.parametrize(("sent", "stored"), [
    ("/deals/12345/quotes", "/deals/:id/quotes"),
    ("/contacts/ivan@example.com", "/contacts/:id"),
    ("/a/3f2b8c1e-5d4a-4f7e-9c61-0a8b7d6e5f40", "/a/:id"),
    ("/search/Ivan%20Petrov", "/search/:id"),  # not a plain word: could be a name typed in
    ("/reports?customer=42", "/reports"),
    ("/reports/", "/reports/"),
    ("reports", None),
    ("/" + "a/" * 13, None),
])
def test_patterns_are_cleaned_again_by_the_collector(sent: str, stored: str | None) -> None:
    assert discovery.sanitize(sent) == stored


@pytest.mark.parametrize(("pattern", "language", "title"), [
    ("/deals/:id/quotes", "en", "Quotes"), ("/deals/:id/quotes", "ru", "Предложения"),
    ("/service-requests/:id", "en", "Service requests"), ("/", "en", "Home"), ("/:id", "ru", "Главная"),
])
def test_suggested_title_from_the_last_meaningful_segment(pattern: str, language: str, title: str) -> None:
    assert discovery.suggest_title(pattern, language) == title


# -- the collector ---------------------------------------------------------------------------------


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    make_accounts(client)
    load_process(client)
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


async def report(api: Any, body: Any, origin: str = ORIGIN) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await api.post("/v1/discovery", data=io.BytesIO(data),
                          headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": origin})


async def switch_on(api: Any, client: storage.Client, site: sites.Site) -> None:
    discovery.switch_on(client, site.name, actor="ada")
    await api.server.app[keys.SITES].refresh()


def stored(client: storage.Client) -> dict[str, int]:
    rows = storage.query_rows(client, "SELECT pattern, sum(views) AS n FROM discovered_paths GROUP BY pattern")
    return {r["pattern"]: int(r["n"]) for r in rows}


async def test_the_config_names_the_discovery_module_only_while_on(api: Any, client: storage.Client,
                                                                   site: sites.Site) -> None:
    config = await (await api.get(f"/v1/config/{site.key}")).json()
    assert "d" not in config
    await switch_on(api, client, site)
    config = await (await api.get(f"/v1/config/{site.key}")).json()
    assert config["d"] == f"/discovery.js?site={site.key}"
    script = await api.get(config["d"], headers={"Origin": ORIGIN})
    assert script.status == 200 and script.headers["Access-Control-Allow-Origin"] == "*"
    assert "import.meta.url" in await script.text() and "/v1/discovery" in await script.text()


async def test_the_extensions_tracker_gets_the_config_without_the_discovery_module(api: Any, client: storage.Client,
                                                                                     site: sites.Site) -> None:
    # the browser extension's tracker has the collector's EXTENSION_BASE as its base: it runs no code it
    # does not carry, so its config never names the module the page would import from the collector
    await switch_on(api, client, site)
    plain = await (await api.get(f"/v1/config/{site.key}")).json()
    answer = await api.get(f"/v1/extension/v1/config/{site.key}", headers={"Origin": ORIGIN})
    assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    extension = await answer.json()
    assert "d" in plain and "d" not in extension
    assert {k: v for k, v in plain.items() if k != "d"} == extension
    assert (await api.get("/v1/extension/v1/config/no-such-key")).status == 404


async def test_counts_are_stored_per_site_pattern_and_day(api: Any, client: storage.Client, site: sites.Site) -> None:
    await switch_on(api, client, site)
    first = await report(api, {"site": site.key, "counts": {"/reports/:id": 3, "/deals/98765/notes": 2,
                                                           "/clients/77/needs": 5}})
    assert first.status == 202, await first.text()
    # /clients/77/needs is a step by now (a stale config sent it): left out
    assert await first.json() == {"counted": 2, "dropped": 1}
    assert first.headers["Access-Control-Allow-Origin"] == ORIGIN
    await report(api, {"site": site.key, "counts": {"/reports/:id": 1}})
    await api.server.app[collector_discovery.COUNTS].flush(api.server.app[app_keys.STORE])
    assert stored(client) == {"/reports/:id": 4, "/deals/:id/notes": 2}
    rows = storage.query_rows(client, "SELECT DISTINCT site, day FROM discovered_paths")
    assert rows == [{"site": "crm", "day": datetime.now(UTC).date()}]
    columns = storage.query_rows(client, "SELECT name FROM system.columns WHERE database = currentDatabase() "
                                         "AND table = 'discovered_paths' ORDER BY position")
    assert [c["name"] for c in columns] == ["site", "pattern", "day", "views"]  # no time, manager or session


@pytest.mark.parametrize("extra", ["manager", "session_id", "at", "started_at", "title", "content"])
async def test_anything_more_than_patterns_and_counts_is_refused_naming_the_field(
        api: Any, client: storage.Client, site: sites.Site, extra: str) -> None:
    await switch_on(api, client, site)
    response = await report(api, {"site": site.key, "counts": {"/reports/:id": 1}, extra: "m1"})
    assert response.status == 400
    assert (await response.json())["error"].startswith(f"{extra}: not accepted")


@pytest.mark.parametrize(("counts", "status", "words"), [
    ({"/a": 0}, 400, "counts"), ({"/a": 1001}, 400, "counts"), ({"/a": "3"}, 400, "counts"),
    ({"/a": True}, 400, "counts"), ([["/a", 1]], 400, "counts"), ({f"/p{i}": 1 for i in range(51)}, 413, "at most 50"),
    ({"/" + "a" * 400: 1}, 400, "characters"),
])
async def test_bad_counts_are_refused(api: Any, client: storage.Client, site: sites.Site, counts: Any, status: int,
                                      words: str) -> None:
    await switch_on(api, client, site)
    response = await report(api, {"site": site.key, "counts": counts})
    assert response.status == status and words in (await response.json())["error"]


async def test_refused_while_off_from_other_origins_and_unknown_sites(api: Any, client: storage.Client,
                                                                     site: sites.Site) -> None:
    off = await report(api, {"site": site.key, "counts": {"/reports/:id": 1}})
    assert off.status == 409 and "not switched on" in (await off.json())["error"]
    await switch_on(api, client, site)
    assert (await report(api, {"site": site.key, "counts": {"/a": 1}}, origin="https://evil.example")).status == 403
    assert (await report(api, {"site": "nope", "counts": {"/a": 1}})).status == 401
    too_big = await report(api, b'{"site":"' + b"x" * 20_000 + b'"}')
    assert too_big.status == 413
    await api.server.app[collector_discovery.COUNTS].flush(api.server.app[app_keys.STORE])
    assert stored(client) == {}


async def test_reports_are_rate_limited(api: Any, client: storage.Client, site: sites.Site) -> None:
    await switch_on(api, client, site)
    api.server.app[collector_discovery.COUNTS].address = RateLimiter(1, 2)
    statuses = [(await report(api, {"site": site.key, "counts": {"/a": 1}})).status for _ in range(4)]
    assert statuses[:2] == [202, 202] and statuses[-1] == 429


# -- the process page ------------------------------------------------------------------------------


async def test_the_page_lists_patterns_and_makes_one_a_step(api: Any, client: storage.Client, site: sites.Site) -> None:
    discovery.switch_on(client, site.name, actor="ada")
    today = date.today()
    discovery.record(client, site.name, {"/reports/:id": 30, "/settings": 10}, today - timedelta(days=3))
    discovery.record(client, site.name, {"/reports/:id": 30}, today)
    await login(api, "ada")
    page = await (await api.get("/process")).text()
    data = await (await api.get("/api/v1/process")).json()
    found = data["discovery"]
    assert found["on"] is True and found["views"] == 70
    first = found["patterns"][0]
    assert (first["pattern"], first["views"], first["rule"], first["title"]) == ("/reports/:id", 60, "/reports/*",
                                                                                "Reports")
    assert first["share"] == pytest.approx(60 / 70)
    assert first["first_day"] == (today - timedelta(days=3)).isoformat() and first["last_day"] == today.isoformat()
    assert "<code>/reports/:id</code>: 60 views, 86% of the views outside the steps; seen" in page
    assert "Make this a step" in page

    response = await api.post("/process/step", data={
        "csrf": csrf_of(page), "site": site.name, "title": "Reports", "patterns": "/reports/*",
        "reason": "Found by step discovery: 60 views in 30 days"})
    html = await response.text()
    assert "Saved as version 2: Reports." in html
    process = processes.latest(client, site.name)
    assert process is not None and process.version == 2
    assert process.steps[-1] == processes.Step("reports", "Reports", ("/reports/*",))
    assert processes.history(client, site.name)[0]["reason"] == "Found by step discovery: 60 views in 30 days"
    assert audit.entries(client, action="process.load")[0].actor == "ada"
    after = await (await api.get("/api/v1/process")).json()
    assert [p["pattern"] for p in after["discovery"]["patterns"]] == ["/settings"]  # a step by now


async def test_admin_switches_discovery_from_the_page_a_director_cannot(api: Any, client: storage.Client,
                                                                       site: sites.Site) -> None:
    await login(api, "ada")
    page = await (await api.get("/process")).text()
    assert "Discovery is off" in page and 'name="days"' in page
    response = await api.post("/process/discovery", data={"csrf": csrf_of(page), "site": site.name, "days": "14",
                                                          "reason": "new CRM release"})
    html = await response.text()
    assert "Discovery is on until" in html
    window = discovery.window(client, site.name)
    assert window is not None and window.until - datetime.now(UTC) > timedelta(days=13)
    bad = await api.post("/api/v1/process/discovery", json={"days": 60}, headers={"X-CSRF-Token": csrf_of(html)})
    assert bad.status == 400
    off = await api.post("/api/v1/process/discovery", json={"off": True}, headers={"X-CSRF-Token": csrf_of(html)})
    assert off.status == 200 and (await off.json())["on"] is False
    assert discovery.window(client, site.name) is None

    await api.post("/logout", data={"csrf": csrf_of(html)})
    await login(api, "dora")
    page = await (await api.get("/process")).text()
    assert 'name="days"' not in page and "Make this a step" not in page
    refused = await api.post("/api/v1/process/discovery", json={"days": 7}, headers={"X-CSRF-Token": csrf_of(page)})
    assert refused.status == 403 and discovery.window(client, site.name) is None


async def test_the_audit_log_says_each_switch_in_words(api: Any, client: storage.Client, site: sites.Site) -> None:
    discovery.switch_on(client, site.name, 14, actor="ada", reason="pilot")
    discovery.switch_off(client, site.name, actor="ada", reason="enough")
    await login(api, "ada")
    html = await (await api.get("/audit")).text()
    assert "Step discovery on site crm switched on for 14\xa0days, until" in html or \
        "Step discovery on site crm switched on for 14 days, until" in html
    assert "Step discovery on site crm switched off" in html
    assert not re.search(r"\d{4}-\d{2}-\d{2}T\d", re.sub(r"<[^>]+>", "", html))  # words, not ISO
