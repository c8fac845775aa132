"""Audit log: who changed what, when and why; filtered by actor, action, object and dates.

Admins read every entry; a director their own actions and the entries about the teams they lead
(dashboards/access.py audit_reader). The JSON twin and the CSV export show the same entries."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

from dashboards import access
from dashboards.auth import Viewer
from dashboards.web import Page, add_page, answer, day, day_param, run, text
from kernel import audit, managers

# The entries whose object is a manager ("site/manager-id"): shown with the manager's name.
ABOUT_A_MANAGER = ("manager.set", "team.assign")

LIMIT = 500


async def audit_page(request: web.Request, who: Viewer) -> Page:
    q = request.query
    filters = {"actor": q.get("actor", ""), "action": q.get("action", ""), "object": q.get("object", ""),
               "since": day_param(q.get("since", ""), "since"), "until": day_param(q.get("until", ""), "until")}
    reader = await run(request, access.audit_reader, who.user)
    found = await run(request, audit.entries, action=filters["action"] or None, actor=filters["actor"] or None,
                      obj=filters["object"] or None, since=filters["since"], until=filters["until"], limit=LIMIT,
                      reader=reader)
    rows = [{"at": e.at, "actor": e.actor, "action": e.action, "object": e.object, "reason": e.reason,
             "details": e.details} for e in found]
    names = await run(request, _manager_names, rows)
    for row in rows:
        row["object_name"] = names.get(row["object"]) if row["action"] in ABOUT_A_MANAGER else None
    return Page("audit.html", {"filters": filters, "entries": rows, "limit": LIMIT}, title="audit.title",
                table="entries", columns=["at", "actor", "action", "object", "reason", "details"])


def _manager_names(client: Client, rows: list[dict[str, Any]]) -> dict[str, str]:
    """"site/manager-id" -> the manager's name, for the entries about a manager."""
    wanted = {row["object"].partition("/")[0] for row in rows if row["action"] in ABOUT_A_MANAGER}
    return {f"{site}/{manager}": name for site in wanted for manager, name in managers.names(client, site).items()}


def register(app: web.Application) -> None:
    add_page(app, "/audit", audit_page, roles=("admin", "director"), name="audit", query=(
        text("actor", "who acted"), text("action", "what was done, e.g. band.set"),
        text("object", "what it was done to"), day("since", "first day"), day("until", "last day")),
             response=answer(filters="object", entries="array", limit="integer"))
