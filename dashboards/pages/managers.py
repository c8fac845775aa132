"""Managers: the directory of names (kernel/managers.py), for admins: who is who, and a form to name a
manager or correct a name.

    GET  /managers?site=&edit=ID          the list (managers with a name or a team) and the form
    POST /managers/{manager}/name         set the name (and e-mail); audited as manager.set

The tracker knows managers by the CRM's id; every other page shows the name stored here. Bulk changes
come from `stepwatch managers import FILE.csv`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from clickhouse_connect.driver.client import Client

from dashboards.auth import Viewer
from dashboards.i18n import Translator
from dashboards.web import DONE, SITE, Page, add_action, add_page, answer, chosen_site, run, text
from kernel import managers, sites, teams
from kernel.errors import InvalidInput, NotFound

ROLES = ("admin",)
COLUMNS = ["manager", "name", "team", "email"]
FIELDS = ("manager", "name", "email")  # the fields whose refusals the page words itself


def directory_rows(client: Client, site: str) -> list[dict[str, Any]]:
    """Every manager with a name or a team, by name (those without a name last, by id)."""
    if not site:
        return []
    known = managers.directory(client, site)
    membership = teams.members(client, site)
    rows = [{"manager": m, "name": known[m].name if m in known else None, "team": membership.get(m, ""),
             "email": known[m].email if m in known else ""} for m in sorted(set(known) | set(membership))]
    return sorted(rows, key=lambda r: (r["name"] is None, (r["name"] or r["manager"]).casefold(), r["manager"]))


async def managers_page(request: web.Request, who: Viewer) -> Page:
    """The managers of a site with their names, and the form to set one (admins)."""
    site, site_names = await chosen_site(request)
    rows = await run(request, directory_rows, site)
    editing = request.query.get("edit", "").strip()
    current = next((r for r in rows if r["manager"] == editing), None)
    data = {"site": site, "sites": site_names, "managers": rows,
            "edit": {"manager": editing, "name": current["name"] if current else "",
                     "email": current["email"] if current else ""}}
    return Page("managers.html", data, title="managers.title", table="managers", columns=COLUMNS)


async def set_name(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    """Set a manager's name (and e-mail: left out, it stays); audited."""
    _ = Translator(who.user.language)
    manager = request.match_info["manager"]
    site = str(fields.get("site") or "").strip() or (await chosen_site(request))[0]
    name, reason = str(fields.get("name") or ""), str(fields.get("reason") or "")
    email = fields.get("email")
    if not isinstance(email, str | None):
        raise InvalidInput(_("managers.error_email"), field="email")
    if not await run(request, _site_exists, site):
        raise NotFound(f"no site named {site!r}", field="site", code="no_site", values={"site": site})
    try:
        entry, changed = await run(request, lambda client: managers.set_manager(
            client, site, manager, name=name, email=email, actor=who.user.name, reason=reason))
    except InvalidInput as exc:
        if exc.field in FIELDS:
            raise InvalidInput(_(f"managers.error_{exc.field}"), field=exc.field) from None
        raise
    return {"site": site, "manager": entry.manager, "name": entry.name, "email": entry.email, "changed": changed,
            "message": _("managers.saved", name=entry.name, manager=entry.manager),
            "redirect": "/managers?" + urlencode({"site": site})}


def _site_exists(client: Client, site: str) -> bool:
    return any(s.name == site for s in sites.list_sites(client))


def register(app: web.Application) -> None:
    add_page(app, "/managers", managers_page, roles=ROLES, name="managers",
             query=(SITE, text("edit", "the manager id whose name the form opens with")),
             response=answer(site="string", sites="array", managers="array", edit="object"))
    add_action(app, "/managers/{manager}/name", set_name, roles=ROLES, name="manager_name",
               query=(SITE,),
               path_params=(text("manager", "the manager's id (as the tracker reports it)", required=True),),
               body=(text("site", "the site (default: the first)"), text("name", "the name people read", required=True),
                     text("email", "an e-mail address; empty: none; left out: unchanged"),
                     text("reason", "why (kept in the audit log)")),
               response=answer(site="string", manager="string", name="string", email="string", changed="boolean",
                               **DONE))
