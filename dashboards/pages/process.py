"""Process: a site's steps and their URL rules, the versions of its definition, and the tracker
snippet to paste into the CRM's pages. Read-only, for admins and directors; the definition is
changed with `stepwatch process load` (versioned and audited).

Admins also set here what an hour of a manager's time costs the site (POST /process/cost; the CLI's
`stepwatch sites cost`): the overview then shows the hours lost in money too.

The snippet is docs/tracker.md's, with this server's address and the site's public key filled in.
The site's secret (for signed identity) is never shown: `stepwatch sites add` prints it once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from clickhouse_connect.driver.client import Client

from dashboards.auth import Viewer, is_https
from dashboards.pages.overview import ROLES
from dashboards.i18n import Translator
from dashboards.web import DONE, SITE, Page, add_action, add_page, answer, choice, chosen_site, flag, number, run, text
from kernel import processes, sites
from kernel.errors import InvalidInput

STEP_COLUMNS = ["position", "key", "title", "patterns"]
HISTORY_COLUMNS = ["version", "process", "loaded_at", "loaded_by", "reason"]
SNIPPET = """<script async src="{base}/tracker.js" data-site="{key}"></script>
<script>
  window.stepwatch = window.stepwatch || function () {{ (stepwatch.q = stepwatch.q || []).push(arguments) }};
  stepwatch('identify', 'manager-42', tokenFromYourBackend); // token only where the site requires signed identity
</script>"""


def tracker_snippet(base: str, site_key: str) -> str:
    return SNIPPET.format(base=base, key=site_key)


def process_figures(client: Client, site: str) -> tuple[processes.Process | None, list[dict[str, Any]],
                                                        sites.Site | None]:
    if not site:
        return None, [], None
    return processes.latest(client, site), processes.history(client, site), sites.get_site(client, site)


async def process_page(request: web.Request, who: Viewer) -> Page:
    site, site_names = await chosen_site(request)
    process, history, found = await run(request, process_figures, site)
    base = ("https" if is_https(request) else "http") + "://" + request.host
    steps = [{"position": i, "key": s.key, "title": s.title, "patterns": list(s.patterns)}
             for i, s in enumerate(process.steps, start=1)] if process else []
    data = {
        "site": site,
        "sites": site_names,
        "process": None if process is None else {
            "key": process.key, "title": process.title, "version": process.version, "loaded_at": process.loaded_at,
            "loaded_by": process.loaded_by, "tracker": {"idle_ms": process.tracker.idle_ms,
                                                        "checkpoint_ms": process.tracker.checkpoint_ms,
                                                        "session_timeout_ms": process.tracker.session_timeout_ms}},
        "steps": steps,
        "history": history,
        "tracker": None if found is None else {
            "site_key": found.key, "script_url": f"{base}/tracker.js", "snippet": tracker_snippet(base, found.key),
            "origins": list(found.origins), "require_identity": found.require_identity, "enabled": found.enabled},
        "cost": None if found is None else {"cost_per_hour": found.cost_per_hour, "currency": found.currency or None},
        "can_set_cost": who.user.role == "admin",
    }
    history_table = request.query.get("table") == "history"
    return Page("process.html", data, title="process.title", table="history" if history_table else "steps",
                columns=HISTORY_COLUMNS if history_table else STEP_COLUMNS)


async def set_cost(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    """Set what an hour of a manager's time costs the site (or clear it); audited as site.cost."""
    _ = Translator(who.user.language)
    site = str(fields.get("site") or "").strip() or (await chosen_site(request))[0]
    clear = str(fields.get("clear") or "").lower() in ("1", "true", "on", "yes")
    amount = None if clear else fields.get("cost_per_hour")
    if not clear and amount in (None, ""):
        raise InvalidInput(_("process.cost_error_cost_per_hour"), field="cost_per_hour")
    if amount is not None:
        amount = float(str(amount).strip().replace(",", ".").replace(" ", "").replace("\u00a0", ""))
    currency = str(fields.get("currency") or "")
    try:
        found = await run(request, lambda client: sites.set_cost(client, site, amount, currency, actor=who.user.name,
                                                                reason=str(fields.get("reason") or "")))
    except InvalidInput as exc:
        if exc.field in ("cost_per_hour", "currency"):
            raise InvalidInput(_(f"process.cost_error_{exc.field}"), field=exc.field) from None
        raise
    message = (_("process.cost_cleared") if found.cost_per_hour is None
               else _("process.cost_saved", cost=_.money(found.cost_per_hour, found.currency)))
    return {"site": found.name, "cost_per_hour": found.cost_per_hour, "currency": found.currency or None,
            "message": message, "redirect": "/process?" + urlencode({"site": found.name}) + "#cost"}


def register(app: web.Application) -> None:
    add_page(app, "/process", process_page, roles=ROLES, name="process",
             query=(SITE, choice("table", ("steps", "history"), "which table ?format=csv exports")),
             response=answer(site="string", sites="array", process="object?", steps="array", history="array",
                             tracker="object?", cost="object?", can_set_cost="boolean"))
    add_action(app, "/process/cost", set_cost, roles=("admin",), name="process_cost", query=(SITE,),
               body=(text("site", "the site (default: the first)"),
                     number("cost_per_hour", 0, sites.MAX_COST_PER_HOUR, "what an hour of a manager's time costs"),
                     text("currency", "ISO 4217 code, e.g. EUR, USD, RUB"),
                     flag("clear", "remove the cost: pages show hours only"),
                     text("reason", "why (kept in the audit log)")),
               response=answer(site="string", cost_per_hour="number?", currency="string?", **DONE))
