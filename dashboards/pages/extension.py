"""The browser extension's side of stepwatch (docs/extension.md): the admin's page with the setup link and
the enterprise policy for a site, the page a setup link opens, and the signed identity a manager's
extension asks for.

    GET /extension?site=&identity=&source=   (JSON twin: /api/v1/extension)   admins
    GET /extension/setup                     (JSON twin: /api/v1/extension/setup)   everyone signed in
    GET /api/v1/me/identity-token?site=KEY   a manager account: {manager, name, token, expires_at, renew_after}

The extension's configuration is one JSON object, the same whether it comes from the policy's managed
storage or from a setup link (`<base>/extension/setup#<base64url of the JSON>`: the fragment never
reaches a server): the collector's address, the site's public key, the CRM origins it runs on, and
where the manager's id comes from (a page element, a JavaScript value, or signing in to stepwatch).

The identity token is collector/identity.py's, signed with the site's secret for the manager id linked
to the signed-in account, valid TOKEN_HOURS; the extension asks again after `renew_after`. Issuing
one is not audited: every manager's extension renews several times a day, and a token only says what
the account already is (the collector's refusals of bad tokens are counted in its metrics).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

from collector.identity import sign
from dashboards.auth import Viewer, is_https, viewer
from dashboards.web import (
    API_ROUTES,
    FORMAT,
    SITE,
    ApiRoute,
    Declared,
    Page,
    add_page,
    answer,
    choice,
    chosen_site,
    json_response,
    run,
    text,
)
from kernel import app_keys, managers, processes, sites

MANIFEST = Path(__file__).resolve().parents[2] / "tracker_js" / "extension" / "src" / "manifest.json"
TOKEN_PATH = "/api/v1/me/identity-token"
TOKEN_HOURS = 12  # a working day and then some: one sign-in a day at most, renewed while the browser runs
RENEW_HOURS = 3  # asked again this long before it expires
IDENTITY_SOURCES = ("signin", "element", "variable")
DEFAULT_ELEMENT = "[data-manager-id]"
# A dotted path of plain JavaScript names (window.crm.user.id): read, never evaluated.
VARIABLE = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*){0,9}$")
MAX_SOURCE = 200


@cache
def extension_id() -> str:
    """The id Chrome and Edge give the extension: from the public key in its manifest (the first 128 bits
    of its SHA-256, each hex digit written as a letter a-p), the same for the zip and an unpacked folder."""
    key = base64.b64decode(json.loads(MANIFEST.read_text())["key"])
    return "".join(chr(ord("a") + int(digit, 16)) for digit in hashlib.sha256(key).hexdigest()[:32])


def base_url(request: web.Request) -> str:
    """Where people and extensions reach this server: the configured public address, else this request's."""
    public = request.app[app_keys.SETTINGS].public_url
    return public.rstrip("/") if public else ("https" if is_https(request) else "http") + "://" + request.host


def identity_of(kind: str, source: str, base: str) -> tuple[dict[str, str] | None, str | None]:
    """The configuration's `identity` ({"signin": base}, {"element": selector} or {"variable": path}), or
    None and what is wrong with `source` (a message key's last part), which the page says in words."""
    if kind == "signin":
        return {"signin": base}, None
    source = source.strip()
    if len(source) > MAX_SOURCE:
        return None, "source_too_long"
    if kind == "variable":
        path = source.removeprefix("window.")
        if not VARIABLE.fullmatch(path):
            return None, "bad_variable"
        return {"variable": "window." + path}, None
    return {"element": source or DEFAULT_ELEMENT}, None


def extension_config(base: str, site: sites.Site, identity: dict[str, str],
                     process: processes.Process | None) -> dict[str, Any]:
    """What the extension reads from managed storage or a setup link (src/schema.json describes it). The
    step titles are for its popup (the collector's tracker config carries keys and URL rules only)."""
    titles = {step.key: step.title for step in process.steps} if process else {}
    return {"collector": base, "site": site.key, "origins": list(site.origins), "identity": identity,
            "stepwatch": base, "titles": titles}


def setup_link(base: str, config: dict[str, Any]) -> str:
    text = json.dumps(config, separators=(",", ":"), ensure_ascii=False)  # UTF-8: Cyrillic titles stay short
    packed = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    return f"{base}/extension/setup#{packed}"


def policy(config: dict[str, Any]) -> dict[str, Any]:
    """The managed configuration as Chrome's and Edge's policy files hold it ("3rdparty" extensions policy)."""
    return {"3rdparty": {"extensions": {extension_id(): config}}}


def site_and_process(client: Client, site: str) -> tuple[sites.Site, processes.Process | None]:
    return sites.get_site(client, site), processes.latest(client, site)


async def extension_page(request: web.Request, who: Viewer) -> Page:
    """The setup link and the enterprise policy of a site's extension, for the identity source chosen."""
    site_name, names = await chosen_site(request)
    found, process = await run(request, site_and_process, site_name) if site_name else (None, None)
    base = base_url(request)
    kind = request.query.get("identity") or ("signin" if found is not None and found.require_identity else "element")
    identity, problem = identity_of(kind, request.query.get("source", ""), base)
    config = None if found is None or identity is None else extension_config(base, found, identity, process)
    data = {
        "site": site_name,
        "sites": names,
        "extension_id": extension_id(),
        "identity": kind,
        "source": "" if kind == "signin" else next(iter(identity.values())) if identity else request.query["source"],
        "problem": problem,
        "require_identity": bool(found and found.require_identity),
        "config": config,
        "setup_link": None if config is None else setup_link(base, config),
        "policy": None if config is None else policy(config),
    }
    policy_text = json.dumps(data["policy"], indent=2, ensure_ascii=False)
    return Page("extension.html", data, title="extension.title",
                context={"policy_text": policy_text, "policy_rows": min(policy_text.count("\n") + 2, 40),
                         "signin_warning": kind != "signin" and data["require_identity"]})


async def setup_page(request: web.Request, who: Viewer) -> Page:
    """Where a setup link lands: how to give the link to the extension (the link's fragment stays here)."""
    return Page("extension_setup.html", {"extension_id": extension_id()}, title="extension.setup_title")


def identity_token(client: Client, who: Viewer, site_key: str, now: float) -> dict[str, Any]:
    found = next((s for s in sites.list_sites(client) if s.key == site_key), None)
    if found is None:
        return {"error": "no site has this key: copy the setup link again from the extension page", "status": 404}
    expires = int(now) + TOKEN_HOURS * 3600
    manager = who.user.manager_id
    name = managers.names(client, found.name).get(manager) or manager
    return {"site": found.key, "manager": manager, "name": name, "token": sign(found.secret, manager, expires),
            "expires_at": expires, "renew_after": expires - RENEW_HOURS * 3600}


async def identity_token_api(request: web.Request) -> web.Response:
    """A signed identity for the signed-in manager account, for the browser extension."""
    who = await viewer(request)
    if who is None:
        return json_response({"error": "sign in to stepwatch first"}, status=401)
    if who.role != "manager":
        return json_response({"error": "only a manager account is tracked: sign in with your own manager account"},
                             status=403)
    if not who.user.manager_id:
        return json_response({"error": "this manager account is linked to no manager id: ask an admin to link it"},
                             status=403)
    TOKEN_DECLARED.check_request(request)
    key = request.query.get("site", "")
    if not key:
        return json_response({"error": "site: give the site's public key", "field": "site"}, status=400)
    found = await run(request, identity_token, who, key, time.time())
    status = found.pop("status", 200)
    return json_response(found, status=status)


SITE_KEY = text("site", "the site's public key (as in the tracker snippet)", required=True)
TOKEN_DECLARED = Declared(query=(SITE_KEY, FORMAT))
EXTENSION = answer(site="string", sites="array", extension_id="string", identity="string", source="string",
                   require_identity="boolean", problem="string?", config="object?", setup_link="string?",
                   policy="object?")
TOKEN = answer(site="string", manager="string", name="string", token="string", expires_at="integer",
               renew_after="integer")


def register(app: web.Application) -> None:
    add_page(app, "/extension", extension_page, roles=("admin",), name="extension",
             query=(SITE, choice("identity", IDENTITY_SOURCES, "where the manager's id comes from"),
                    text("source", "the page element (CSS selector) or JavaScript value (window.path) holding it")),
             response=EXTENSION)
    add_page(app, "/extension/setup", setup_page, roles=("admin", "director", "trainer", "manager"),
             name="extension_setup", response=answer(extension_id="string"))
    app.router.add_get(TOKEN_PATH, identity_token_api)
    app[API_ROUTES].append(ApiRoute("get", TOKEN_PATH, "A signed identity for my manager id, for the browser "
                                    "extension", ("manager",), TOKEN_DECLARED, TOKEN))
