"""The process page: a site's steps and URL rules, its versions, and the tracker snippet for the CRM."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from kernel import processes, sites, storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import load_process
from tests.web_helpers import SECRET, login, make_accounts

XSS = "<script>alert(1)</script>"


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    make_accounts(client)
    load_process(client)
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


async def test_steps_rules_and_snippet_in_html_json_and_csv(api: Any, site: sites.Site) -> None:
    await login(api, "dora")
    response = await api.get("/process")
    assert response.status == 200
    html = await response.text()
    data = await (await api.get("/api/v1/process")).json()
    assert [s["key"] for s in data["steps"]] == ["identification", "needs", "products", "offer", "contract",
                                                 "payment", "closing"]
    offer = data["steps"][3]
    assert offer == {"position": 4, "key": "offer", "title": "Offer",
                     "patterns": ["/clients/{customer}/offer", "/clients/{customer}/offers/{offer}"]}
    assert data["process"]["version"] == 1 and data["process"]["tracker"]["idle_ms"] == 30_000
    assert "idle after 30\xa0s without input" in html and "a session ends after 30\xa0min without" in html
    assert [h["reason"] for h in data["history"]] == ["first version"]

    base = str(api.make_url("")).rstrip("/")
    snippet = data["tracker"]["snippet"]
    assert snippet.startswith(f'<script async src="{base}/tracker.js" data-site="{site.key}"></script>\n<script>')
    assert "window.stepwatch = window.stepwatch || function () { (stepwatch.q = stepwatch.q || []).push(arguments) };" \
        in snippet and "stepwatch('identify', 'manager-42', tokenFromYourBackend);" in snippet
    assert data["tracker"]["origins"] == ["https://crm.example.com"] and data["tracker"]["require_identity"] is False
    assert site.secret not in html and site.secret not in str(data)  # the secret never leaves the server

    assert '<textarea id="tracker-snippet" class="snippet" rows="6" readonly' in html
    assert "&lt;script async src=" in html  # the snippet is shown as text, never run
    assert '<th scope="row">Offer</th>' in html and "<code>/clients/{customer}/offers/{offer}</code>" in html
    assert re.search(r"<label for=\"tracker-snippet\">", html)

    steps_csv = list(csv.DictReader(io.StringIO(await (await api.get("/process?format=csv")).text())))
    assert [r["key"] for r in steps_csv] == [s["key"] for s in data["steps"]]
    assert steps_csv[3]["patterns"] == "/clients/{customer}/offer; /clients/{customer}/offers/{offer}"
    history_csv = list(csv.DictReader(io.StringIO(await (await api.get("/api/v1/process?format=csv&table=history"))
                                                   .text())))
    assert [r["version"] for r in history_csv] == ["1"]


async def test_a_new_version_and_a_second_site(api: Any, client: storage.Client) -> None:
    text = (
        'process = "sales"\ntitle = "Sales desk"\n[[steps]]\nkey = "offer"\ntitle = "' + XSS + '"\n'
        'patterns = ["/offer"]\n'
    )
    processes.load(client, processes.parse(text, "crm"), actor="test", reason="only the offer")
    sites.add_site(client, "other", ["https://other.example.com"], require_identity=True, actor="test")
    await login(api, "ada")
    data = await (await api.get("/api/v1/process")).json()
    assert data["process"]["version"] == 2 and [h["version"] for h in data["history"]] == [2, 1]
    assert data["sites"] == ["crm", "other"] and data["steps"][0]["title"] == XSS
    html = await (await api.get("/process")).text()
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<select name="site" data-autosubmit>' in html
    other = await (await api.get("/api/v1/process?site=other")).json()
    assert other["process"] is None and other["steps"] == [] and other["tracker"]["require_identity"] is True
    page = await api.get("/process?site=other")
    assert page.status == 200 and "has no process yet" in await page.text()
    assert (await api.get("/api/v1/process?site=nowhere")).status == 404


@pytest.mark.parametrize(("name", "status"), [("ada", 200), ("dora", 200), ("tom", 403), ("max", 403)])
async def test_permissions_per_role(api: Any, name: str, status: int) -> None:
    await login(api, name)
    assert (await api.get("/process", allow_redirects=False)).status == status
    assert (await api.get("/api/v1/process")).status == status


async def test_anonymous_goes_to_login_and_the_api_answers_401(api: Any) -> None:
    response = await api.get("/process", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/login?next=")
    assert (await api.get("/api/v1/process")).status == 401


async def test_the_page_speaks_russian(api: Any) -> None:
    await login(api, "sam")  # a manager: refused, in Russian
    refused = await (await api.get("/process")).text()
    assert "Доступ запрещён" in refused
    api.session.cookie_jar.clear()
    await login(api, "ada")
    token = re.search(r'name="csrf" value="([^"]+)"', await (await api.get("/process")).text())
    assert token
    await api.post("/account/language", data={"language": "ru", "csrf": token.group(1)})
    html = await (await api.get("/process")).text()
    assert "Шаги и правила URL" in html and "Код трекера для CRM" in html
