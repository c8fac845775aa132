"""Process: a site's steps and their URL rules, the versions of its definition, and the tracker
snippet to paste into the CRM's pages. Read-only, for admins and directors; the definition is
changed with `stepwatch process load` (versioned and audited).

The snippet is docs/tracker.md's, with this server's address and the site's public key filled in.
The site's secret (for signed identity) is never shown: `stepwatch sites add` prints it once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

from dashboards.auth import Viewer, is_https
from dashboards.pages.overview import ROLES
from dashboards.web import SITE, Page, add_page, answer, choice, chosen_site, run
from kernel import processes, sites

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
    }
    history_table = request.query.get("table") == "history"
    return Page("process.html", data, title="process.title", table="history" if history_table else "steps",
                columns=HISTORY_COLUMNS if history_table else STEP_COLUMNS)


def register(app: web.Application) -> None:
    add_page(app, "/process", process_page, roles=ROLES, name="process",
             query=(SITE, choice("table", ("steps", "history"), "which table ?format=csv exports")),
             response=answer(site="string", sites="array", process="object?", steps="array", history="array",
                             tracker="object?"))
