"""My figures: a manager account's own step times against the bands, and its own flags.

    GET /me?site=&since=&until=      (JSON twin: /api/v1/me)

The same figures as the manager page, always for the manager id linked to the account: there is
no parameter naming a manager, so nobody else's data can be asked for. Other roles get 403 (they
open /managers/{manager} instead).
"""

from __future__ import annotations

from aiohttp import web

from dashboards.auth import Viewer
from dashboards.i18n import Translator
from dashboards.pages import coaching as coaching_pages
from dashboards.pages.manager import FIGURES, PERIOD, TABLE, csv_table, manager_data, period_of, segment, step_charts
from dashboards.web import SITE, Page, add_page, chosen_site, run
from kernel import app_keys
from kernel.errors import Forbidden


async def me_page(request: web.Request, who: Viewer) -> Page:
    """A manager account's own step times against the bands, and its own flags (manager accounts only)."""
    if not who.user.manager_id:
        raise Forbidden("this manager account is linked to no manager id: stepwatch users add ... --manager-id")
    site, names = await chosen_site(request)
    settings = request.app[app_keys.SETTINGS]
    period = period_of(request.query, settings)
    data = await run(request, manager_data, settings, who.user, site, who.user.manager_id, period,
                     unknown_is_404=False)
    data["sites"] = names
    data["coaching"] = await run(request, coaching_pages.history, settings, who.user, site, who.user.manager_id)
    _ = Translator(who.user.language)
    table, columns = csv_table(request.query)
    return Page("me.html", data, title="me.title", table=table, columns=columns,
                context={"charts": step_charts(_, data), "segment": segment,
                         "coaching_charts": coaching_pages.history_charts(_, data["coaching"])})


def register(app: web.Application) -> None:
    # other roles get 403 ("the admin role may not open this"): they have no figures of their own
    add_page(app, "/me", me_page, roles=("manager",), name="me", query=(SITE, *PERIOD, TABLE),
             response=FIGURES)
