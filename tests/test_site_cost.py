"""What an hour of a manager's time costs a site: set from the CLI and the process page (admins),
validated with the field named, audited, and shown in the viewer's language."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from kernel import sites, storage, users
from kernel.errors import InvalidInput, NotFound
from kernel.settings import Settings
from stepwatch.app import create_app
from stepwatch.cli import CliError, build_parser
from tests.dashboard_data import load_process
from tests.web_helpers import SECRET, csrf_of, login, make_accounts


def cli(client: storage.Client, *argv: str) -> tuple[int, str]:
    args = build_parser().parse_args(list(argv))
    out = io.StringIO()
    return args.func(args, client, out), out.getvalue()


def audited(client: storage.Client) -> list[dict[str, Any]]:
    return storage.query_rows(client, "SELECT actor, object, reason, details FROM audit_log "
                                      "WHERE action = 'site.cost' ORDER BY at")


def test_set_read_clear_and_audit(client: storage.Client, site: sites.Site) -> None:
    assert site.cost_per_hour is None and site.currency == ""
    changed = sites.set_cost(client, site.name, 1500, "rub", actor="ada", reason="budget 2027")
    assert (changed.cost_per_hour, changed.currency) == (1500.0, "RUB")
    again = sites.get_site(client, site.name)
    assert (again.cost_per_hour, again.currency) == (1500.0, "RUB")
    assert (again.key, again.pseudonym_key, again.origins) == (site.key, site.pseudonym_key, site.origins)
    cleared = sites.set_cost(client, site.name, None, actor="ada")
    assert (cleared.cost_per_hour, cleared.currency) == (None, "")
    rows = audited(client)
    assert [(r["actor"], r["reason"]) for r in rows] == [("ada", "budget 2027"), ("ada", "")]
    assert json.loads(str(rows[0]["details"])) == {"cost_per_hour": [None, 1500.0], "currency": ["", "RUB"]}


@pytest.mark.parametrize(("cost", "currency", "field"), [
    (0, "EUR", "cost_per_hour"), (-5, "EUR", "cost_per_hour"), (float("nan"), "EUR", "cost_per_hour"),
    (float("inf"), "EUR", "cost_per_hour"), (1e9, "EUR", "cost_per_hour"), (True, "EUR", "cost_per_hour"),
    (100, "", "currency"), (100, "euro", "currency"), (100, "XYZ", "currency"),
])
def test_bad_cost_or_currency_is_refused_naming_the_field(client: storage.Client, site: sites.Site, cost: Any,
                                                          currency: str, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        sites.set_cost(client, site.name, cost, currency, actor="ada")
    assert raised.value.field == field
    assert sites.get_site(client, site.name).cost_per_hour is None  # nothing written


def test_unknown_site_is_not_found(client: storage.Client) -> None:
    with pytest.raises(NotFound):
        sites.set_cost(client, "nowhere", 10, "EUR", actor="ada")


def test_cli_sets_lists_and_clears(client: storage.Client, site: sites.Site) -> None:
    code, out = cli(client, "sites", "cost", site.name, "--per-hour", "42.5", "--currency", "eur", "--reason", "x")
    assert code == 0 and "costs 42.5 EUR" in out
    code, out = cli(client, "sites", "list", "--json")
    listed = json.loads(out)[0]
    assert (listed["cost_per_hour"], listed["currency"]) == (42.5, "EUR")
    assert "42.5 EUR" in cli(client, "sites", "list")[1]
    code, out = cli(client, "sites", "cost", site.name, "--clear")
    assert code == 0 and "hours lost only" in out and sites.get_site(client, site.name).cost_per_hour is None
    for argv in (["--per-hour", "10"], [], ["--per-hour", "10", "--currency", "EUR", "--clear"]):
        with pytest.raises(CliError):
            cli(client, "sites", "cost", site.name, *argv)


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    make_accounts(client)
    load_process(client)
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


async def test_admin_sets_the_cost_on_the_process_page(api: Any, client: storage.Client, site: sites.Site) -> None:
    await login(api, "ada")
    page = await (await api.get("/process")).text()
    assert "Not set: pages show hours only." in page and 'name="cost_per_hour"' in page
    form = {"csrf": csrf_of(page), "site": site.name, "cost_per_hour": "1250,5", "currency": "usd",
            "reason": "finance"}
    response = await api.post("/process/cost", data=form)
    assert response.status == 200  # followed the redirect back to the page
    html = await response.text()
    assert ("Saved: an hour of a manager&#39;s time costs $1,250." in html
            or "Saved: an hour of a manager's time costs $1,250." in html)
    assert "An hour costs $1,250." in html
    data = await (await api.get("/api/v1/process")).json()
    assert data["cost"] == {"cost_per_hour": 1250.5, "currency": "USD"} and data["can_set_cost"] is True
    assert [r["actor"] for r in audited(client)] == ["ada"]
    assert 'value="1250.5"' in html  # the field shows the cost as it is typed in the reader's language
    users.set_language(client, "ada", "ru", actor="test")
    assert 'value="1250,5"' in await (await api.get("/process")).text()
    users.set_language(client, "ada", "en", actor="test")

    # A bad currency: the page says which field in the viewer's words, and nothing changes.
    response = await api.post("/process/cost", data={"csrf": csrf_of(html), "site": site.name, "cost_per_hour": "10",
                                                      "currency": "dollars", "next": "/process#cost"})
    html = await response.text()
    assert 'id="error-currency"' in html and "Enter a currency as an ISO code" in html
    assert sites.get_site(client, site.name).cost_per_hour == 1250.5

    # The JSON API answers 400 naming the field; clearing works.
    token = csrf_of(html)
    bad = await api.post("/api/v1/process/cost", json={"cost_per_hour": -1, "currency": "EUR"},
                         headers={"X-CSRF-Token": token})
    assert bad.status == 400 and "cost_per_hour" in (await bad.json())["error"]
    bad = await api.post("/api/v1/process/cost", json={"cost_per_hour": "lots", "currency": "EUR"},
                         headers={"X-CSRF-Token": token})
    assert bad.status == 400
    cleared = await api.post("/api/v1/process/cost", json={"clear": True}, headers={"X-CSRF-Token": token})
    assert cleared.status == 200 and (await cleared.json())["cost_per_hour"] is None


async def test_russian_admin_reads_rubles_in_russian(api: Any, client: storage.Client, site: sites.Site) -> None:
    sites.set_cost(client, site.name, 1500, "RUB", actor="test")
    await login(api, "ada")
    page = await (await api.get("/process")).text()
    await api.post("/account/language", data={"csrf": csrf_of(page), "language": "ru", "next": "/process"})
    html = await (await api.get("/process")).text()
    assert "Час стоит 1\xa0500\xa0₽." in html


async def test_a_director_sees_the_cost_but_cannot_set_it(api: Any, client: storage.Client, site: sites.Site) -> None:
    sites.set_cost(client, site.name, 80, "EUR", actor="test")
    await login(api, "dora")
    page = await (await api.get("/process")).text()
    assert "An hour costs €80." in page and 'name="cost_per_hour"' not in page
    response = await api.post("/api/v1/process/cost", json={"cost_per_hour": 1, "currency": "EUR"},
                              headers={"X-CSRF-Token": csrf_of(page)})
    assert response.status == 403
    assert sites.get_site(client, site.name).cost_per_hour == 80
