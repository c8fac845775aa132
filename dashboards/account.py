"""Signing in and out, the start page of each role, and the account's own settings (language)."""

from __future__ import annotations

from aiohttp import web

from dashboards import auth
from dashboards.auth import Viewer
from dashboards.i18n import LANGUAGES, Translator
from dashboards.web import LANGUAGE, LOGIN_CSRF, Page, render, route_paths, run, safe_next
from kernel import users

HOME = {"admin": "/overview", "director": "/overview", "trainer": "/coaching", "manager": "/me"}


async def home(request: web.Request) -> web.StreamResponse:
    who = await auth.viewer(request)
    if who is None:
        raise web.HTTPSeeOther("/login")
    target = HOME.get(who.role, "/overview")
    if target not in route_paths(request):
        target = "/overview" if who.role in ("admin", "director") else "/me" if who.role == "manager" else "/login"
    raise web.HTTPSeeOther(target)


async def login_form(request: web.Request) -> web.StreamResponse:
    if await auth.viewer(request) is not None and request.method == "GET":
        raise web.HTTPSeeOther(safe_next(request.query.get("next", "/")))
    return _login_page(request, error="", name="", status=200)


def _login_page(request: web.Request, *, error: str, name: str, status: int, retry_after: int = 0) -> web.Response:
    cookie, token = request.app[auth.SESSIONS].login_form_token()
    request[LOGIN_CSRF] = token
    language = request.query.get("lang", "")
    if language not in LANGUAGES:
        language = request.headers.get("Accept-Language", "en")[:2].lower()
    request[LANGUAGE] = language if language in LANGUAGES else "en"
    page = Page("login.html", {"error": error, "name": name, "next": safe_next(request.query.get("next", "/"))},
                title="login.title")
    response = render(request, None, page, status=status)
    response.set_cookie(auth.LOGIN_COOKIE, cookie, max_age=3600, httponly=True, samesite="Lax",
                        secure=auth.is_https(request), path="/login")
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name, password = str(form.get("name", "")).strip()[:64], str(form.get("password", ""))
    _ = Translator(request.headers.get("Accept-Language", "en")[:2].lower())
    if not request.app[auth.SESSIONS].login_form_ok(request.cookies.get(auth.LOGIN_COOKIE), str(form.get("csrf", ""))):
        return _login_page(request, error=_("login.expired"), name=name, status=403)
    throttle, address = request.app[auth.THROTTLE], auth.address(request)
    wait = throttle.attempt(name, address)  # counted before the check: concurrent guesses wait too
    if wait:
        return _login_page(request, error=_("login.throttled", minutes=max(1, round(wait / 60))), name=name,
                           status=429, retry_after=wait)
    try:
        user = await request.app[auth.PASSWORDS].check(request, name, password[:1024])
    except auth.LoginsBusy:
        throttle.withdraw(name, address)  # not checked, so not counted
        return _login_page(request, error=_("login.busy"), name=name, status=429, retry_after=auth.BUSY_RETRY_S)
    if user is None:
        return _login_page(request, error=_("login.wrong"), name=name, status=401)
    throttle.succeeded(name, address)
    session_id = await run(request, users.start_session, user.name)
    value, _csrf = request.app[auth.SESSIONS].issue(user, session_id)
    response = web.HTTPSeeOther(safe_next(str(form.get("next", "")) or "/"))
    auth.set_session_cookie(request, response, value)
    response.del_cookie(auth.LOGIN_COOKIE, path="/login")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    who = await auth.viewer(request)
    form = await request.post()
    if who is not None and not auth.csrf_ok(request, who, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(reason="missing or wrong CSRF token")
    if who is not None and who.session:
        await run(request, users.end_session, who.session)  # a copy of the cookie stops working too
    response = web.HTTPSeeOther("/login")
    response.del_cookie(auth.SESSION_COOKIE, path="/")
    raise response


async def set_language(request: web.Request, who: Viewer, fields: dict) -> dict:
    language = str(fields.get("language", ""))
    await run(request, users.set_language, who.name, language, actor=who.name)
    return {"language": language, "message": Translator(language)("account.language_saved")}
