"""The browser extension's server side: the admin's setup link and policy, and the signed identity a
manager's extension asks for (dashboards/pages/extension.py)."""

from __future__ import annotations

import base64
import json
import time
from html.parser import HTMLParser
from typing import Any

import pytest

from collector.identity import IdentityRejected, verify
from dashboards.pages.extension import RENEW_HOURS, TOKEN_HOURS, extension_id
from kernel import managers, processes, sites, storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import load_process
from tests.web_helpers import SECRET, login, make_accounts


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site,
              signed_site: sites.Site) -> Any:
    make_accounts(client)
    load_process(client)
    managers.set_manager(client, "crm", "m1", name="Max Petrov", actor="test")
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


class Textareas(HTMLParser):
    """The text of each <textarea> by id: what an admin copies."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] = {}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "textarea":
            self._in = dict(attrs).get("id") or ""
            self.found[self._in] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self.found[self._in] += data


def unpack(link: str) -> dict[str, Any]:
    packed = link.split("#", 1)[1]
    return json.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))


async def test_the_admin_copies_a_setup_link_and_a_policy_holding_the_same_configuration(
        api: Any, site: sites.Site, client: storage.Client) -> None:
    await login(api, "ada")
    base = str(api.make_url("")).rstrip("/")
    data = await (await api.get("/api/v1/extension", params={"site": "crm", "identity": "element",
                                                              "source": "#user .id"})).json()
    config = {"collector": base, "site": site.key, "origins": ["https://crm.example.com"],
              "identity": {"element": "#user .id"}, "stepwatch": base,
              "titles": {s.key: s.title for s in processes.latest(client, "crm").steps}}
    assert data["config"] == config
    assert data["setup_link"].startswith(f"{base}/extension/setup#") and unpack(data["setup_link"]) == config
    assert data["policy"] == {"3rdparty": {"extensions": {extension_id(): config}}}
    assert site.secret not in json.dumps(data)

    html = await (await api.get("/extension", params={"site": "crm", "identity": "element", "source": "#user .id"})
                  ).text()
    boxes = Textareas()
    boxes.feed(html)
    assert boxes.found["setup-link-text"] == data["setup_link"]  # what is shown is what is copied, unescaped
    assert json.loads(boxes.found["policy-text"]) == data["policy"]
    assert "--origin https://crm.example.com" in html


async def test_a_site_requiring_signed_identity_defaults_to_signing_in(api: Any, signed_site: sites.Site) -> None:
    await login(api, "ada")
    base = str(api.make_url("")).rstrip("/")
    data = await (await api.get("/api/v1/extension", params={"site": "secure"})).json()
    assert data["identity"] == "signin" and data["config"]["identity"] == {"signin": base}
    # an id read from the page would be refused by the collector: the page says so
    html = await (await api.get("/extension", params={"site": "secure", "identity": "element"})).text()
    assert "This site requires signed identity" in html


async def test_a_javascript_value_is_a_dotted_path_never_code(api: Any) -> None:
    await login(api, "ada")
    ok = await (await api.get("/api/v1/extension", params={"identity": "variable", "source": "crm.user.id"})).json()
    assert ok["config"]["identity"] == {"variable": "window.crm.user.id"}
    for bad in ("crm.user['id']", "alert(1)", "a..b", "crm.user.id;fetch(x)"):
        data = await (await api.get("/api/v1/extension", params={"identity": "variable", "source": bad})).json()
        assert data["problem"] == "bad_variable" and data["config"] is None and data["setup_link"] is None, bad
    await login(api, "ada")
    html = await (await api.get("/extension", params={"identity": "variable", "source": "alert(1)"})).text()
    assert "Name the value by a dotted path" in html and 'aria-invalid="true"' in html


async def test_the_setup_page_explains_in_russian(api: Any) -> None:
    await login(api, "sam")
    html = await (await api.get("/extension/setup")).text()
    assert "Вставьте адрес этой страницы" in html


async def test_a_manager_gets_a_token_the_collector_accepts_for_their_own_id(api: Any, signed_site: sites.Site) -> None:
    await login(api, "max")
    before = time.time()
    response = await api.get("/api/v1/me/identity-token", params={"site": signed_site.key})
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    token = await response.json()
    assert token["manager"] == "m1" and token["site"] == signed_site.key
    assert abs(token["expires_at"] - (before + TOKEN_HOURS * 3600)) < 5
    assert token["renew_after"] == token["expires_at"] - RENEW_HOURS * 3600
    verify(signed_site.secret, "m1", token["token"])  # the collector's own check
    with pytest.raises(IdentityRejected):
        verify(signed_site.secret, "m2", token["token"])  # it vouches for nobody else
    with pytest.raises(IdentityRejected):
        verify(signed_site.secret, "m1", token["token"], now=token["expires_at"] + 1)


async def test_the_token_names_the_manager_as_the_site_knows_them(api: Any, site: sites.Site) -> None:
    await login(api, "max")
    token = await (await api.get("/api/v1/me/identity-token", params={"site": site.key})).json()
    assert token["name"] == "Max Petrov"
    verify(site.secret, "m1", token["token"])


@pytest.mark.parametrize(("who", "status"), [(None, 401), ("ada", 403), ("dora", 403), ("tom", 403)])
async def test_only_a_manager_account_gets_a_token(api: Any, signed_site: sites.Site, who: str | None,
                                                   status: int) -> None:
    if who:
        await login(api, who)
    response = await api.get("/api/v1/me/identity-token", params={"site": signed_site.key})
    assert response.status == status and (await response.json())["error"]


async def test_a_token_for_an_unknown_or_missing_site_key_is_refused(api: Any) -> None:
    await login(api, "max")
    assert (await api.get("/api/v1/me/identity-token", params={"site": "pk_nope"})).status == 404
    assert (await api.get("/api/v1/me/identity-token")).status == 400


async def test_another_origin_cannot_read_a_token_with_the_managers_cookie(api: Any, signed_site: sites.Site) -> None:
    # A page elsewhere could send the request with the cookie (SameSite=Lax stops even that for fetch), but
    # no CORS header lets it read the answer.
    await login(api, "max")
    response = await api.get("/api/v1/me/identity-token", params={"site": signed_site.key},
                             headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
