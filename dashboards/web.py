"""The page framework: every page is one handler that returns data, shown three ways.

    add_page(app, "/drawdowns", handler, roles=...)   registers
        GET /drawdowns              the HTML page (jinja2 template, server-rendered)
        GET /api/v1/drawdowns       its JSON twin: the same data, the same permission checks
        ...?format=csv              the page's main table as CSV, on either path

    add_action(app, "/flags/{flag_id}/ack", handler, roles=...) registers
        POST /flags/{flag_id}/ack          an HTML form post: CSRF token, then a redirect back
        POST /api/v1/flags/{flag_id}/ack   the JSON twin: body JSON, Bearer token or cookie + X-CSRF-Token

Anonymous HTML requests are redirected to the login page; anonymous API requests get 401. A role
not listed gets 403; finer checks (whose data) raise kernel.errors.Forbidden in the handler.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from uuid import UUID

import jinja2
import orjson
from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from dashboards import auth
from dashboards.auth import Viewer
from dashboards.i18n import Translator, catalog
from kernel import app_keys, sites, small_tables, teams
from kernel.errors import InvalidInput, NotFound, StepwatchError

API = "/api/v1"
ALL_ROLES = ("admin", "director", "trainer", "manager")
FLASH_COOKIE = "stepwatch_flash"
TEMPLATES = Path(__file__).with_name("templates")

# The navigation: (path, message key, roles that see the link).
NAV: list[tuple[str, str, tuple[str, ...]]] = [
    ("/overview", "nav.overview", ("admin", "director")),
    ("/drawdowns", "nav.drawdowns", ("admin", "director")),
    ("/steps", "nav.steps", ("admin", "director", "trainer")),
    ("/flow", "nav.flow", ("admin", "director", "trainer", "manager")),
    ("/coaching", "nav.coaching", ("admin", "director", "trainer", "manager")),
    ("/me", "nav.me", ("manager",)),
    ("/process", "nav.process", ("admin", "director")),
    ("/managers", "nav.managers", ("admin",)),
    ("/audit", "nav.audit", ("admin", "director")),
]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass
class Page:
    """What a page handler returns: the data, and how to show it."""

    template: str
    data: dict[str, Any]
    title: str = ""  # a message key or plain text shown in <title> and <h1>
    table: str | None = None  # the key in `data` whose rows ?format=csv exports
    columns: list[str] | None = None  # CSV columns (default: the keys of the first row)
    context: dict[str, Any] = field(default_factory=dict)  # extras for the template only (not in JSON)


PageHandler = Callable[[web.Request, Viewer], Awaitable[Page]]
ActionHandler = Callable[[web.Request, Viewer, dict[str, Any]], Awaitable[dict[str, Any]]]
JINJA = web.AppKey("jinja", jinja2.Environment)
LANGUAGE = web.RequestKey("language", str)  # the language of a page shown before sign-in
LOGIN_CSRF = web.RequestKey("login_csrf", str)  # the login form's CSRF token
FLASH = web.AppKey("flash_serializer", URLSafeTimedSerializer)


# --- what a route accepts: declared once, checked before the handler runs, listed in /openapi.json ---------------

# The days ClickHouse's Date column holds (Date32 and DateTime64 hold more; every stored day is a Date).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2149, 6, 6)
_ASSIGNMENT_ID = re.compile(r"[0-9a-fA-F-]{6,36}")
MAX_TEXT = 1000  # characters of a text parameter: a name, a filter, a reason


@dataclass(frozen=True)
class Param:
    """One path or query parameter, or one body field, that a route accepts.

    kind: text | uuid | assignment_id (a UUID or its first 6+ characters) | date | datetime | int | number |
    enum (one of `choices`) | bool | list (of text: a JSON array or a comma-separated string)."""

    name: str
    kind: str = "text"
    description: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def schema(self) -> dict[str, Any]:
        """Its JSON Schema in the OpenAPI document."""
        kind = self.kind
        if kind == "uuid":
            return {"type": "string", "format": "uuid"}
        if kind == "assignment_id":
            return {"type": "string", "pattern": "^[0-9a-fA-F-]{6,36}$",
                    "description": "the assignment id, or its first 6 characters or more"}
        if kind == "date":
            return {"type": "string", "format": "date"}
        if kind == "datetime":
            return {"type": "string", "format": "date-time"}
        if kind in ("int", "number"):
            found: dict[str, Any] = {"type": "integer" if kind == "int" else "number"}
            if self.minimum is not None:
                found["minimum"] = self.minimum
            if self.maximum is not None:
                found["maximum"] = self.maximum
            return found
        if kind == "enum":
            return {"type": "string", "enum": list(self.choices)}
        if kind == "bool":
            return {"type": "boolean"}
        if kind == "list":
            return {"anyOf": [{"type": "array", "items": {"type": "string", "maxLength": MAX_TEXT}},
                              {"type": "string", "description": "comma-separated"}]}
        return {"type": "string", "maxLength": MAX_TEXT}

    def check(self, value: Any, *, where: str) -> None:
        """InvalidInput naming the parameter when `value` does not fit (NotFound for a malformed id in a
        path: no such thing exists). Query and path values are text; a JSON body's may be typed."""
        if value is None or value == "":
            return  # absent: the handler applies its default, or says the field is required in its words
        name, kind = self.name, self.kind
        if isinstance(value, dict) or (isinstance(value, list) and kind != "list"):
            raise InvalidInput(f"{name} must be a single value", field=name, code="single_value")
        if kind == "list":
            items = value if isinstance(value, list) else [value]
            if any(isinstance(v, dict | list) for v in items):
                raise InvalidInput(f"{name} must be a list of names", field=name, code="list_of_names")
            return
        if kind in ("int", "number"):
            self._check_number(value)
            return
        if kind == "bool":
            return
        text = value if isinstance(value, str) else str(value)
        if len(text) > MAX_TEXT:
            raise InvalidInput(f"{name} is longer than {MAX_TEXT} characters", field=name, code="too_long",
                               values={"limit": str(MAX_TEXT)})
        if kind == "uuid" and not is_uuid(text) or kind == "assignment_id" and not _ASSIGNMENT_ID.fullmatch(text):
            if where == "path":
                raise NotFound(f"no {name.removesuffix('_id')} {text[:80]}", field=name, code="no_such_id")
            raise InvalidInput(f"{name} must be an id like 3f2b8c1e-5d4a-4f7e-9c61-0a8b7d6e5f40", field=name,
                               code="not_an_id")
        if kind in ("date", "datetime"):
            self._check_moment(text, where)
        elif kind == "enum" and text not in self.choices:
            raise InvalidInput(f"{name} must be one of {', '.join(self.choices)}", field=name, code="not_a_choice",
                               values={"choices": ", ".join(self.choices)})

    def _check_moment(self, text: str, where: str) -> None:
        """A date the storage cannot hold is refused everywhere; one that does not parse is refused here
        for the query, while in a body the handler parses it and says so in the viewer's language."""
        try:
            if self.kind == "date":
                day_param(text, self.name)
            else:
                moment_param(text, self.name)
        except InvalidInput:
            parses = True
            try:
                (date if self.kind == "date" else datetime).fromisoformat(text)
            except ValueError:
                parses = False
            if parses or where != "body":
                raise

    def _check_number(self, value: Any) -> None:
        name = self.name
        what = f"{name} must be a {'whole ' if self.kind == 'int' else ''}number"
        code = "not_whole" if self.kind == "int" else "not_a_number"
        if isinstance(value, bool):
            raise InvalidInput(what, field=name, code=code)
        try:
            number = float(str(value).strip().replace(",", ".")) if isinstance(value, str) else float(value)
        except (ValueError, OverflowError):
            raise InvalidInput(what, field=name, code=code) from None
        if not math.isfinite(number) or self.kind == "int" and not number.is_integer():
            raise InvalidInput(what, field=name, code=code)
        low = -math.inf if self.minimum is None else self.minimum
        high = math.inf if self.maximum is None else self.maximum
        if not low <= number <= high:
            bounds, code = ((f"from {low:g} to {high:g}", "out_of_range") if math.isfinite(low) and math.isfinite(high)
                            else (f"at least {low:g}", "too_small") if math.isfinite(low)
                            else (f"at most {high:g}", "too_large"))
            raise InvalidInput(f"{name} must be {bounds}", field=name, code=code,
                               values={"low": f"{low:g}", "high": f"{high:g}"})


def text(name: str, description: str = "", *, required: bool = False) -> Param:
    return Param(name, "text", description, required)


def uuid_id(name: str, description: str = "", *, required: bool = False) -> Param:
    return Param(name, "uuid", description, required)


def day(name: str, description: str = "", *, required: bool = False) -> Param:
    return Param(name, "date", description, required)


def moment(name: str, description: str = "", *, required: bool = False) -> Param:
    return Param(name, "datetime", description, required)


def choice(name: str, choices: Iterable[str], description: str = "", *, required: bool = False) -> Param:
    return Param(name, "enum", description, required, tuple(choices))


def whole(name: str, minimum: int, maximum: int, description: str = "", *, required: bool = False) -> Param:
    return Param(name, "int", description, required, minimum=minimum, maximum=maximum)


def number(name: str, minimum: float, maximum: float, description: str = "", *, required: bool = False) -> Param:
    return Param(name, "number", description, required, minimum=minimum, maximum=maximum)


def flag(name: str, description: str = "") -> Param:
    return Param(name, "bool", description)


def names(name: str, description: str = "", *, required: bool = False) -> Param:
    return Param(name, "list", description, required)


def answer(**fields: str) -> dict[str, Any]:
    """The JSON Schema of an answer from its top-level fields and their JSON types ("object?": or null),
    for /openapi.json: answer(site="string", flags="array", analysis="object?")."""
    return {"type": "object", "required": sorted(fields), "properties": {
        name: {"type": [kind.rstrip("?"), "null"] if kind.endswith("?") else kind} for name, kind in fields.items()}}


DONE = {"message": "string"}  # what every action answers besides its own fields: the sentence a page shows

SITE = text("site", "the site's name (default: the first site)")
FORMAT = choice("format", ("json", "csv"), "csv: the page's main table as CSV")


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(value: str) -> bool:
    """The canonical form only: Python's UUID() also reads braces, "urn:uuid:" and no dashes, which the
    storage does not."""
    return _UUID.fullmatch(value) is not None


@dataclass(frozen=True)
class Declared:
    """A route's declared parameters: path (every {name} of the path), query, and for an action its body."""

    path: tuple[Param, ...] = ()
    query: tuple[Param, ...] = ()
    body: tuple[Param, ...] | None = None

    def check_request(self, request: web.Request) -> None:
        match = request.match_info
        for p in self.path:
            p.check(match.get(p.name), where="path")
        query = request.query
        if query:
            for p in self.query:
                if p.name in query:
                    p.check(query.get(p.name), where="query")

    def check_body(self, fields: dict[str, Any]) -> None:
        for p in self.body or ():
            if p.name in fields:
                p.check(fields[p.name], where="body")


def declare(path: str, path_params: Iterable[Param], query: Iterable[Param], body: Iterable[Param] | None
            ) -> Declared:
    """Every {name} of `path` is declared (as text unless given), and nothing is declared that the path lacks."""
    given = {p.name: p for p in path_params}
    in_path = re.findall(r"{(\w+)}", path)
    unknown = set(given) - set(in_path)
    if unknown:
        raise ValueError(f"{path} has no path parameter {sorted(unknown)}")
    return Declared(tuple(given.get(n, Param(n, "text", required=True)) for n in in_path), tuple(query),
                    None if body is None else tuple(body))


@dataclass(frozen=True)
class ApiRoute:
    """One JSON route, as /openapi.json lists it."""

    method: str
    path: str
    summary: str
    roles: tuple[str, ...]
    params: Declared = field(default_factory=Declared)
    response: dict[str, Any] | None = None  # the JSON Schema of its answer (default: an object)


API_ROUTES = web.AppKey("api_routes", list)
ROUTE_PATHS = web.AppKey("route_paths", set)  # every route's path, read once the router is complete


def setup(app: web.Application, secret: str) -> None:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["query_string"] = query_string
    env.filters["team"] = team_title
    app[JINJA] = env
    app[FLASH] = URLSafeTimedSerializer(secret, salt="stepwatch.flash")
    app[API_ROUTES] = []
    app[ROUTE_PATHS] = set()


@jinja2.pass_context
def team_title(context: Any, team: str | None) -> str:
    """A team as people call it: its title (`stepwatch teams add NAME --title`), else its name."""
    if not team:
        return ""
    return (context.get("team_titles") or {}).get(team) or team


def query_string(query: Any, **changes: Any) -> str:
    """The current query with some parameters changed (None removes one), for links and CSV export."""
    merged = {k: v for k, v in dict(query).items() if k not in changes}
    merged.update({k: v for k, v in changes.items() if v is not None})
    return urlencode(merged)


def add_page(app: web.Application, path: str, handler: PageHandler, *, roles: Iterable[str], name: str,
             query: Iterable[Param] = (), path_params: Iterable[Param] = (),
             response: dict[str, Any] | None = None) -> None:
    """`query` and `path_params` declare what the page accepts (`format` is implied): checked before the
    handler runs (400 naming the parameter; 404 for a malformed id in the path), and listed in /openapi.json."""
    allowed = tuple(roles)
    declared = declare(path, path_params, (*query, FORMAT), None)

    async def html(request: web.Request) -> web.StreamResponse:
        async with small_tables_snapshot(request):
            return await html_page(request)

    async def html_page(request: web.Request) -> web.StreamResponse:
        who = await auth.viewer(request)
        if who is None:
            raise web.HTTPSeeOther("/login?next=" + quote(request.path_qs, safe=""))
        try:
            _check_role(who, allowed)
            declared.check_request(request)
            page = await handler(request, who)
        except StepwatchError as exc:
            return render_error(request, who, exc.status, worded(exc, who.user.language))
        if request.query.get("format") == "csv":
            return csv_response(page, name)
        if "team_titles" not in page.context:  # for the `team` filter: the page's site, else the one chosen
            site = page.data.get("site") if isinstance(page.data, dict) else None
            if not isinstance(site, str) or not site:
                with contextlib.suppress(StepwatchError):  # a page that has no use for ?site= ignores a bad one
                    site = (await chosen_site(request))[0]
            if site:
                page.context["team_titles"] = await request.app[app_keys.STORE].run(teams.list_teams, site)
        return render(request, who, page)

    async def api(request: web.Request) -> web.StreamResponse:
        async with small_tables_snapshot(request):
            return await api_page(request)

    async def api_page(request: web.Request) -> web.StreamResponse:
        who = await auth.viewer(request)
        if who is None:
            return json_response({"error": "sign in, or send an API token: Authorization: Bearer ..."}, status=401)
        _check_role(who, allowed)
        declared.check_request(request)
        page = await handler(request, who)
        if request.query.get("format") == "csv":
            return csv_response(page, name)
        return json_response(page.data)

    app.router.add_get(path, html, name=name)
    app.router.add_get(API + path, api, name=name + "_api")
    app[API_ROUTES].append(ApiRoute("get", API + path, _summary(handler), allowed, declared, response))


@contextlib.asynccontextmanager
async def small_tables_snapshot(request: web.Request) -> AsyncIterator[None]:
    """A page (GET) reads the small tables as of now, answered from this process's memory of them
    where they are unchanged (kernel/small_tables.py): one query instead of seven or eight."""
    store = request.app[app_keys.STORE]
    token = small_tables.begin(store.memory, await store.run(small_tables.versions))
    try:
        yield
    finally:
        small_tables.end(token)


def add_action(app: web.Application, path: str, handler: ActionHandler, *, roles: Iterable[str], name: str,
               body: Iterable[Param] = (), query: Iterable[Param] = (), path_params: Iterable[Param] = (),
               response: dict[str, Any] | None = None) -> None:
    """`body` declares the fields the handler reads (a form's or a JSON object's), `query` and `path_params`
    the rest: checked before the handler runs and listed in /openapi.json, as for add_page."""
    allowed = tuple(roles)
    declared = declare(path, path_params, query, body)

    async def form(request: web.Request) -> web.StreamResponse:
        who = await auth.viewer(request)
        if who is None:
            raise web.HTTPSeeOther("/login")
        fields = dict(await request.post())
        back = safe_next(str(fields.pop("next", "")) or urlsplit(request.headers.get("Referer", "")).path or "/")
        if not auth.csrf_ok(request, who, str(fields.pop("csrf", ""))):
            return render_error(request, who, 403, Translator(who.user.language)("error.csrf"))
        try:
            _check_role(who, allowed)
            declared.check_request(request)
            declared.check_body(fields)
            result = await handler(request, who, fields)
        except StepwatchError as exc:
            if exc.status == 403:
                return render_error(request, who, 403, worded(exc, who.user.language))
            response = web.HTTPSeeOther(back)
            set_flash(request, response, {"error": worded(exc, who.user.language), "field": getattr(exc, "field", None),
                                          "values": {k: str(v) for k, v in fields.items()}, "action": name})
            raise response from None
        response = web.HTTPSeeOther(result.get("redirect") or back)
        set_flash(request, response, {"ok": result.get("message", ""), "action": name})
        raise response

    async def api(request: web.Request) -> web.StreamResponse:
        who = await auth.viewer(request)
        if who is None:
            return json_response({"error": "sign in, or send an API token: Authorization: Bearer ..."}, status=401)
        if not auth.csrf_ok(request, who, request.headers.get("X-CSRF-Token")):
            return json_response({"error": "missing or wrong X-CSRF-Token header"}, status=403)
        _check_role(who, allowed)
        declared.check_request(request)
        fields = await read_body(request)
        declared.check_body(fields)
        result = await handler(request, who, fields)
        result.pop("redirect", None)
        return json_response(result)

    app.router.add_post(path, form, name=name)
    app.router.add_post(API + path, api, name=name + "_api")
    app[API_ROUTES].append(ApiRoute("post", API + path, _summary(handler), allowed, declared, response))


def _summary(handler: Callable[..., Any]) -> str:
    doc = (handler.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else handler.__name__.replace("_", " ")


async def read_body(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            raise web.HTTPBadRequest(reason="the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(reason="the body must be a JSON object")
        return body
    return dict(await request.post())


def _check_role(who: Viewer, allowed: tuple[str, ...]) -> None:
    if who.role not in allowed:
        from kernel.errors import Forbidden

        raise Forbidden(f"the {who.role} role may not open this", code=f"role_may_not_{who.role}")


def safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect to another host."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# --- showing a page -------------------------------------------------------------------------------------------


def render(request: web.Request, who: Viewer | None, page: Page, status: int = 200) -> web.Response:
    env = request.app[JINJA]
    language = who.user.language if who else request.get(LANGUAGE, "en")
    _ = Translator(language)
    flash = take_flash(request)
    context = {
        "_": _,
        "page": page,
        "data": page.data,
        "viewer": who,
        "csrf": who.csrf if who else request.get(LOGIN_CSRF, ""),
        "nav": [(path, key) for path, key, roles in NAV if who and who.role in roles and path in route_paths(request)],
        "path": request.path,
        "query": request.query,
        "flash": flash,
        "api_path": API + request.path_qs if who else "",
        **page.context,
    }
    body = env.get_template(page.template).render(context)
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    if flash is not None:
        response.del_cookie(FLASH_COOKIE, path="/")
    return response


def worded(exc: StepwatchError, language: str) -> str:
    """The error in the reader's language when its `code` has words in the catalog (messages/error.toml:
    `error.<code>`, filled with its values and the field's label; `error.<code>.one|few|many|other` for a
    count `n`), else its English message."""
    key = f"error.{exc.code}"
    counted = f"{key}.other" in catalog()  # a phrase per plural category, for the count `n`
    if not exc.code or key not in catalog() and not counted:
        return str(exc)
    _ = Translator(language)
    values = {name: _human(_, value) for name, value in exc.values.items()}
    if exc.field:
        label = f"error.field.{exc.field}"
        values.setdefault("field", _(label) if label in catalog() else exc.field)
    return _.plural(key, float(exc.values["n"]), **values) if counted else _(key, **values)


def _human(_: Translator, value: str) -> str:
    """A value carried by an error, for a person: a date in the language's style, a number with its separators."""
    try:
        return _.date(date.fromisoformat(value))
    except (TypeError, ValueError):
        pass
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return _.num(number, 0 if number.is_integer() else 2)


def render_error(request: web.Request, who: Viewer | None, status: int, message: str) -> web.Response:
    return render(request, who, Page("error.html", {"status": status, "error": message}, title=f"error.{status}"
                                     if status in (400, 403, 404, 409, 429) else "error.other"), status=status)


def route_paths(request: web.Request) -> set[str]:
    """The paths the application serves (for links to pages that may not exist), collected once:
    every page used to walk the whole router on each render."""
    paths = request.app[ROUTE_PATHS]
    if not paths:
        paths.update(r.resource.canonical for r in request.app.router.routes() if r.resource is not None)
    return paths


def csv_response(page: Page, name: str) -> web.Response:
    rows = page.data.get(page.table or "", []) if page.table else []
    columns = page.columns or (list(rows[0]) if rows else [])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    response = web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="stepwatch-{name}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        value = "; ".join(str(v) for v in value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet must not run a cell as a formula
    return value


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | set | frozenset | tuple):
        return str(value) if isinstance(value, UUID) else list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def json_response(data: Any, status: int = 200) -> web.Response:
    body = orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    response = web.Response(body=body, status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


# --- flash messages: what happened to the last form, shown once on the next page -------------------------------


def set_flash(request: web.Request, response: web.StreamResponse, message: dict[str, Any]) -> None:
    value = request.app[FLASH].dumps(message)
    response.set_cookie(FLASH_COOKIE, value, max_age=60, httponly=True, samesite="Lax",
                        secure=auth.is_https(request), path="/")


def take_flash(request: web.Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        message = request.app[FLASH].loads(raw, max_age=120)
    except BadSignature:
        return None
    return message if isinstance(message, dict) else None


# --- helpers for page handlers --------------------------------------------------------------------------------


async def run(request: web.Request, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a storage function off the event loop (the chdb engine has no async client)."""
    return await request.app[app_keys.STORE].run(fn, *args, **kwargs)


async def chosen_site(request: web.Request) -> tuple[str, list[str]]:
    """The site this page shows (`?site=`, else the first one) and all site names, for the picker."""
    names = [s.name for s in await run(request, sites.list_sites)]
    wanted = request.query.get("site", "")
    if wanted and wanted in names:
        return wanted, names
    if wanted:
        from kernel.errors import NotFound

        raise NotFound(f"no site named {wanted!r}", field="site", code="no_site", values={"site": wanted})
    return (names[0] if names else ""), names


def day_param(text: str, name: str) -> date | None:
    """A day from a query parameter (empty: None); a bad one, or one the storage cannot hold (before
    1970 or after 2149), is an error next to its field."""
    if not text:
        return None
    try:
        found = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a date like 2026-11-23", field=name, code="not_a_date") from None
    if not FIRST_DAY <= found <= LAST_DAY:
        raise InvalidInput(f"{name} must be a date from {FIRST_DAY} to {LAST_DAY}", field=name,
                           code="date_out_of_range", values={"first": str(FIRST_DAY), "last": str(LAST_DAY)})
    return found


def moment_param(text: str, name: str) -> datetime:
    """A date and time (ISO 8601) within the days the storage holds; InvalidInput naming the field otherwise."""
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a date and time like 2026-12-01T14:30", field=name,
                           code="not_a_moment") from None
    if not FIRST_DAY <= found.date() <= LAST_DAY:
        raise InvalidInput(f"{name} must be a date from {FIRST_DAY} to {LAST_DAY}", field=name,
                           code="date_out_of_range", values={"first": str(FIRST_DAY), "last": str(LAST_DAY)})
    return found
