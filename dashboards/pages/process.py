"""Process: a site's steps and their URL rules, the versions of its definition, and the tracker
snippet to paste into the CRM's pages. Admins and directors read it; admins change it here.

The editor (admins): add, rename, move and remove steps and edit their URL rules (POST /process/step,
/process/step/remove); every change is a new version of the definition, with a required reason, in
the audit log, as `stepwatch process load` makes. Removing a step that has visits asks for a
confirmation: its history stays, read-only. The tester (?test=URL, everyone who reads the page) says
which step an address counts as, or why none.

Discovery (docs/processes.md#discovery): an admin switches it on for a few days (POST /process/discovery);
the page then lists the most viewed paths no step matches, each with "make this a step".

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
from dashboards.i18n import Translator, catalog
from dashboards.pages.overview import ROLES
from dashboards.web import (
    DONE,
    SITE,
    Page,
    add_action,
    add_page,
    answer,
    choice,
    chosen_site,
    flag,
    names,
    number,
    run,
    text,
    whole,
)
from kernel import discovery, processes, sites
from kernel.errors import InvalidInput

STEP_COLUMNS = ["position", "key", "title", "patterns"]
HISTORY_COLUMNS = ["version", "process", "loaded_at", "loaded_by", "reason"]
SNIPPET = """<script async src="{base}/tracker.js" data-site="{key}"></script>
<script>
  window.stepwatch = window.stepwatch || function () {{ (stepwatch.q = stepwatch.q || []).push(arguments) }};
  stepwatch('identify', 'manager-42', tokenFromYourBackend); // token only where the site requires signed identity
</script>"""


DISCOVERY_DAYS = 30  # the days of counts the page lists


def tracker_snippet(base: str, site_key: str) -> str:
    return SNIPPET.format(base=base, key=site_key)


def extension_setup(site: str) -> str:
    """Where the browser extension is set up for a site (dashboards/pages/extension.py)."""
    return "/extension?" + urlencode({"site": site})


def process_figures(client: Client, site: str, language: str = "en") -> dict[str, Any]:
    if not site:
        return {"process": None, "history": [], "site": None, "window": None, "found": [], "views": 0}
    process = processes.latest(client, site)
    found, views = discovery.unmatched(client, process, site, days=DISCOVERY_DAYS, language=language)
    return {"process": process, "history": processes.history(client, site), "site": sites.get_site(client, site),
            "window": discovery.window(client, site), "found": found, "views": views}


def url_test(process: processes.Process, url: str) -> dict[str, Any]:
    """The tester's answer, with steps by title."""
    result = processes.test_url(process, url)
    titles = {s.key: s.title for s in process.steps}

    def said(m: processes.Match) -> dict[str, str]:
        return {"step": m.step, "step_title": titles[m.step], "rule": m.pattern, "path": m.path}

    return {
        "url": url, "path": result.path, "pattern": result.pattern,
        "match": None if result.match is None else said(result.match),
        "shadowed": [said(m) for m in result.shadowed],
        "near": [{"step": n.step, "step_title": titles[n.step], "rule": n.pattern, "segment": n.segment,
                  "wanted": n.wanted, "found": n.found} for n in result.near],
        "suggested_rule": result.suggested_rule, "ignored_query": result.ignored_query,
        "ignored_hash": result.ignored_hash,
    }


async def process_page(request: web.Request, who: Viewer) -> Page:
    site, site_names = await chosen_site(request)
    figures = await run(request, process_figures, site, who.user.language)
    process, history, found = figures["process"], figures["history"], figures["site"]
    window: discovery.Window | None = figures["window"]
    tested = request.query.get("test", "").strip()
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
        "can_edit": who.user.role == "admin" and process is not None,
        "test": url_test(process, tested) if process is not None and tested else None,
        "discovery": {
            "on": window is not None, "until": window.until if window else None,
            "since": window.since if window else None, "set_by": window.set_by if window else None,
            "default_days": discovery.DEFAULT_DAYS, "max_days": discovery.MAX_DAYS, "days": DISCOVERY_DAYS,
            "views": figures["views"],
            "patterns": [{"pattern": d.pattern, "views": d.views, "share": d.share, "first_day": d.first_day,
                          "last_day": d.last_day, "rule": d.rule, "title": d.title} for d in figures["found"]],
        },
        # the extension's setup is an admin's page (dashboards/pages/extension.py)
        "extension_url": extension_setup(site) if site and who.user.role == "admin" else None,
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


def _worded(_: Translator, exc: InvalidInput) -> InvalidInput:
    """A kernel error about the definition in the reader's words (process.error_<code>), same field."""
    key = f"process.error_{exc.code}"
    if exc.code and key in catalog():
        return InvalidInput(_(key, **exc.values), field=exc.field)
    return exc


async def _edit(request: web.Request, who: Viewer, fields: dict[str, Any], change: Any) -> processes.Process:
    """Apply `change(process) -> edited` to the chosen site's current process and store it as a new version."""
    _ = Translator(who.user.language)
    site = str(fields.get("site") or "").strip() or (await chosen_site(request))[0]
    reason = str(fields.get("reason") or "")

    def edit(client: Client) -> processes.Process:
        current = processes.latest(client, site)
        if current is None:
            raise InvalidInput("the site has no process yet", field="title", code="no_process")
        return processes.save_edit(client, change(client, current), actor=who.user.name, reason=reason)

    try:
        return await run(request, edit)
    except InvalidInput as exc:
        raise _worded(_, exc) from None


def _patterns(value: Any) -> list[str]:
    """URL rules from a form's textarea (one per line) or a JSON list."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return [line for line in str(value or "").replace(",", "\n").split() if line]


async def save_step(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    """Add a step, or rename, move and change the URL rules of one: a new version of the process (audited)."""
    _ = Translator(who.user.language)
    key = str(fields.get("step") or "").strip() or None
    position = fields.get("position")
    title = str(fields.get("title") or "")

    added: list[str] = []

    def change(client: Client, current: processes.Process) -> processes.Process:
        edited = processes.edit_step(current, key, title=title, patterns=_patterns(fields.get("patterns")),
                                     position=int(float(position)) if position not in (None, "") else None,
                                     new_key=str(fields.get("key") or ""))
        added.extend({s.key for s in edited.steps} - {s.key for s in current.steps})
        return edited

    stored = await _edit(request, who, fields, change)
    step = stored.step(key or added[0])
    message = _("process.step_saved", step=step.title, version=_.num(stored.version))
    return {"site": stored.site, "version": stored.version, "step": step.key, "message": message,
            "redirect": "/process?" + urlencode({"site": stored.site}) + "#editor"}


async def remove_step(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    """Remove a step: a new version of the process (audited); a step with visits needs `confirm` (they stay)."""
    _ = Translator(who.user.language)
    key = str(fields.get("step") or "").strip()
    confirmed = str(fields.get("confirm") or "").lower() in ("1", "true", "on", "yes")
    removed: dict[str, Any] = {}

    def change(client: Client, current: processes.Process) -> processes.Process:
        step = current.step(key)
        visits = processes.step_visits(client, current.site, step.key)
        removed.update(title=step.title, visits=visits)
        if visits and not confirmed:
            raise InvalidInput(f"{step.title} has {visits} visits: confirm to remove it", field="confirm",
                               code="step_has_visits", values={"step": step.title, "n": str(visits)})
        return processes.remove_step(current, step.key)

    try:
        stored = await _edit(request, who, fields, change)
    except InvalidInput as exc:
        if exc.field == "confirm":  # counted: the words depend on the number of visits
            n = removed["visits"]
            raise InvalidInput(_.plural("process.remove_has_visits", n, step=removed["title"], n=_.num(n)),
                               field="confirm") from None
        raise
    message = _.plural("process.step_removed", removed["visits"], step=removed["title"], version=_.num(stored.version),
                       n=_.num(removed["visits"]))
    return {"site": stored.site, "version": stored.version, "step": key, "message": message,
            "redirect": "/process?" + urlencode({"site": stored.site}) + "#editor"}


async def set_discovery(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    """Switch step discovery on for a number of days (default 7, at most 30), or off; audited."""
    _ = Translator(who.user.language)
    site = str(fields.get("site") or "").strip() or (await chosen_site(request))[0]
    off = str(fields.get("off") or "").lower() in ("1", "true", "on", "yes")
    days = fields.get("days")
    days = discovery.DEFAULT_DAYS if days in (None, "") else int(float(days))
    reason = str(fields.get("reason") or "")
    await run(request, sites.get_site, site)  # NotFound for a site that does not exist
    if off:
        await run(request, lambda client: discovery.switch_off(client, site, actor=who.user.name, reason=reason))
        window, message = None, _("process.discovery_switched_off")
    else:
        try:
            window = await run(request, lambda client: discovery.switch_on(client, site, days, actor=who.user.name,
                                                                           reason=reason))
        except InvalidInput as exc:
            raise _worded(_, exc) from None
        message = _("process.discovery_switched_on", until=_.datetime(window.until))
    return {"site": site, "on": window is not None, "until": window.until if window else None, "message": message,
            "redirect": "/process?" + urlencode({"site": site}) + "#discovery"}


def register(app: web.Application) -> None:
    add_page(app, "/process", process_page, roles=ROLES, name="process",
             query=(SITE, choice("table", ("steps", "history"), "which table ?format=csv exports"),
                    text("test", "an address (or path) to test: which step it counts as, or why none")),
             response=answer(site="string", sites="array", process="object?", steps="array", history="array",
                             tracker="object?", cost="object?", can_set_cost="boolean", can_edit="boolean",
                             test="object?", discovery="object", extension_url="string?"))
    add_action(app, "/process/step", save_step, roles=("admin",), name="process_step", query=(SITE,),
               body=(text("site", "the site (default: the first)"),
                     text("step", "the key of the step to change; empty: add a step"),
                     text("title", "the step's title", required=True),
                     text("key", "a new step's key (default: made from the title)"),
                     names("patterns", "its URL rules: a list, or one per line"),
                     whole("position", 1, processes.MAX_STEPS, "where it goes, 1 = first (default: where it is, "
                                                                "or last)"),
                     text("reason", "why (kept in the audit log)", required=True)),
               response=answer(site="string", version="integer", step="string", **DONE))
    add_action(app, "/process/step/remove", remove_step, roles=("admin",), name="process_step_remove",
               query=(SITE,),
               body=(text("site", "the site (default: the first)"), text("step", "the step's key", required=True),
                     flag("confirm", "remove it although it has visits (they stay, read-only)"),
                     text("reason", "why (kept in the audit log)", required=True)),
               response=answer(site="string", version="integer", step="string", **DONE))
    add_action(app, "/process/discovery", set_discovery, roles=("admin",), name="process_discovery", query=(SITE,),
               body=(text("site", "the site (default: the first)"),
                     whole("days", 1, discovery.MAX_DAYS, f"for how many days (default {discovery.DEFAULT_DAYS})"),
                     flag("off", "switch discovery off now"),
                     text("reason", "why (kept in the audit log)")),
               response=answer(site="string", on="boolean", until="string?", **DONE))
    add_action(app, "/process/cost", set_cost, roles=("admin",), name="process_cost", query=(SITE,),
               body=(text("site", "the site (default: the first)"),
                     number("cost_per_hour", 0, sites.MAX_COST_PER_HOUR, "what an hour of a manager's time costs"),
                     text("currency", "ISO 4217 code, e.g. EUR, USD, RUB"),
                     flag("clear", "remove the cost: pages show hours only"),
                     text("reason", "why (kept in the audit log)")),
               response=answer(site="string", cost_per_hour="number?", currency="string?", **DONE))
