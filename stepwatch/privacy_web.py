"""`GET /api/v1/me/export?site=`: a manager account downloads everything stored about itself.

Only a manager account, and only its own id (the one linked to the account: there is no parameter
naming a manager). Directors and trainers get 403: they read figures for their work on the pages,
and a bulk copy of a person's data is that person's right, not theirs; an admin exports anyone's on
the host (`stepwatch managers export`), where the act is an operator's and audited as such.

The ZIP is built in an unnamed temporary file (removed from the directory at once, so nothing is
left behind whatever happens) and streamed from there: memory stays flat for a year of visits.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from aiohttp import web

from dashboards.auth import viewer
from dashboards.web import API_ROUTES, SITE, ApiRoute, Declared, chosen_site
from kernel import app_keys
from stepwatch import privacy

PATH = "/api/v1/me/export"
CHUNK = 256 * 1024


async def me_export(request: web.Request) -> web.StreamResponse:
    """Everything stored about the signed-in manager, as one ZIP of CSV files with a README."""
    who = await viewer(request)
    if who is None:
        return web.json_response({"error": "sign in first"}, status=401)
    if who.role != "manager":
        return web.json_response({"error": "only a manager account exports its own data here; an admin exports "
                                           "anyone's with: stepwatch managers export ID --site SITE FILE"},
                                 status=403)
    if not who.user.manager_id:
        return web.json_response({"error": "this manager account is linked to no manager id"}, status=403)
    site, _ = await chosen_site(request)
    store = request.app[app_keys.STORE]
    handle, name = tempfile.mkstemp(prefix="stepwatch-export-", suffix=".zip")
    os.close(handle)
    try:
        await store.run(privacy.export, site, who.user.manager_id, Path(name), actor=who.name)
        data = open(name, "rb")  # noqa: SIM115 - read below, closed in the finally
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    with data:
        size = os.fstat(data.fileno()).st_size
        response = web.StreamResponse(headers={
            "Content-Type": "application/zip", "Content-Length": str(size), "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="stepwatch-{_safe(site)}-{_safe(who.user.manager_id)}.zip"'})
        await response.prepare(request)
        while chunk := data.read(CHUNK):
            await response.write(chunk)
        await response.write_eof()
    return response


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60] or "export"


def setup(app: web.Application) -> None:
    app.router.add_get(PATH, me_export)
    app[API_ROUTES].append(ApiRoute("get", PATH, "Everything stored about me, as a ZIP of CSV files with a README",
                                    ("manager",), Declared(query=(SITE,)), {"type": "string",
                                                                            "contentMediaType": "application/zip"}))
