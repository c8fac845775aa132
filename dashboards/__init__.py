"""The dashboards: server-rendered pages (jinja2) for directors, trainers and managers, each with a
JSON twin under /api/v1 and CSV export of its tables; sign-in, roles and scopes.

`setup(app)` adds the routes to the application made by stepwatch.app.create_app.
Where things live: auth.py (who is asking), access.py (whose data they may see), web.py (how a
page is served three ways), i18n.py + messages.toml (every word, en and ru), charts.py (SVG),
pages/ (one module per page), templates/ and static/.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from dashboards import account, auth, openapi
from dashboards import web as pages_web
from dashboards.i18n import LANGUAGES
from kernel import app_keys

STATIC = Path(__file__).with_name("static")

__all__ = ["setup"]


def setup(app: web.Application) -> None:
    settings = app[app_keys.SETTINGS]
    secret = auth.secret_key(settings)
    app[auth.SESSIONS] = auth.Sessions(secret, settings.session_hours)
    app[auth.THROTTLE] = auth.LoginThrottle(settings.login_attempts_account, settings.login_attempts_address)
    app[auth.PASSWORDS] = auth.PasswordChecks(settings.login_workers, settings.login_queue)
    app.on_cleanup.append(auth.close_password_checks)
    pages_web.setup(app, secret)
    app.router.add_get("/", account.home)
    app.router.add_get("/login", account.login_form)
    app.router.add_post("/login", account.login)
    app.router.add_post("/logout", account.logout)
    pages_web.add_action(app, "/account/language", account.set_language, roles=pages_web.ALL_ROLES,
                         name="account_language", body=(pages_web.choice("language", LANGUAGES, required=True),),
                         response=pages_web.answer(language="string", message="string"))
    app.router.add_static("/static/", STATIC, name="static", append_version=False)
    app.router.add_get("/openapi.json", openapi.openapi)
    for module in page_modules():
        module.register(app)


def page_modules() -> list:
    """Every module of dashboards/pages/, each adding its own routes: a new page is a new file there."""
    import importlib
    import pkgutil

    from dashboards import pages as package

    return [importlib.import_module(f"dashboards.pages.{info.name}")
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name)]
