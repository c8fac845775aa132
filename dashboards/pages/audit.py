"""Audit log: who changed what, when and why; filtered by actor, action, object and dates.

Admins read every entry; a director their own actions and the entries about the teams they lead
(dashboards/access.py audit_reader). The JSON twin and the CSV export show the same entries with their
machine values (ISO dates, milliseconds, ids); the HTML page tells each entry as a sentence in the reader's
language (`describe`): managers by name, steps by title, durations in minutes, dates as dates."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from clickhouse_connect.driver.client import Client

from coaching import _store as coaching_store
from coaching.catalog import list_courses
from coaching.lifecycle import CoachingAssignment, fold_all
from dashboards import access
from dashboards.auth import Viewer
from dashboards.i18n import Translator
from dashboards.pages.drawdowns import history_shown
from dashboards.web import Page, add_page, answer, day, day_param, run, text
from kernel import audit, managers, processes, sites, teams

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
    words = await run(request, Words.of, rows)
    for row in rows:
        row["object_name"] = words.manager(*_site_and(row["object"])) if row["action"] in ABOUT_A_MANAGER else None
    _ = Translator(who.user.language)
    sentences = [describe(_, row, words) for row in rows]
    return Page("audit.html", {"filters": filters, "entries": rows, "limit": LIMIT}, title="audit.title",
                table="entries", columns=["at", "actor", "action", "object", "reason", "details"],
                context={"sentences": sentences, "reasons": [why(_, row) for row in rows],
                         "links": [link(row) for row in rows]})


def link(entry: dict[str, Any]) -> str | None:
    """Where to read more of what an entry is about: a coaching assignment, a manager's page."""
    action, obj = entry["action"], entry["object"]
    if action.startswith("coaching.") and _UUID.fullmatch(obj):
        return f"/coaching/assignments/{obj}"
    if action in (*ABOUT_A_MANAGER, "manager.export"):
        site, manager = _site_and(obj)
        return f"/managers/{quote(manager)}?site={quote(site)}"
    return None


def why(_: Translator, entry: dict[str, Any]) -> dict[str, str | None]:
    """The reason as a reader reads it: a flag's change said as on the flag's own history (the analysis'
    English notes in words, a coaching assignment's id as a link to it); what a person wrote, as written."""
    if entry["action"].startswith("flag."):
        said = history_shown(_, [{"reason": entry["reason"], "actor": entry["actor"],
                                  "to_status": (entry.get("details") or {}).get("to", "")}])[0]
        return {"text": said["why"], "link": said["link"]}
    return {"text": entry["reason"] or "–", "link": None}


# --- the names an entry's ids stand for ----------------------------------------------------------------


@dataclass
class Words:
    """What the ids in a page of entries are called: per site, managers, steps, teams and courses; the
    coaching assignments the entries are about."""

    managers: dict[str, dict[str, str]] = field(default_factory=dict)
    steps: dict[str, dict[str, str]] = field(default_factory=dict)
    teams: dict[str, dict[str, str]] = field(default_factory=dict)
    courses: dict[str, dict[str, str]] = field(default_factory=dict)
    assignments: dict[str, CoachingAssignment] = field(default_factory=dict)
    process_of: dict[str, processes.Process] = field(default_factory=dict)

    @classmethod
    def of(cls, client: Client, rows: list[dict[str, Any]]) -> Words:
        words = cls()
        for site in sites.list_sites(client):
            words.managers[site.name] = managers.names(client, site.name)
            process = processes.latest(client, site.name)
            words.steps[site.name] = {s.key: s.title for s in process.steps} if process else {}
            if process:
                words.process_of[site.name] = process
            words.teams[site.name] = teams.list_teams(client, site.name)
            words.courses[site.name] = {c.course_id: c.title for c in list_courses(client, site.name,
                                                                                     include_retired=True)}
        ids = sorted({row["object"] for row in rows if row["action"].startswith("coaching.")
                      and _UUID.fullmatch(row["object"])})
        if ids:
            words.assignments = fold_all(coaching_store.events(client, assignment_ids=ids))
        return words

    def _of(self, table: dict[str, dict[str, str]], site: str, key: str) -> str | None:
        if site:
            return table.get(site, {}).get(key)
        return next((names[key] for names in table.values() if key in names), None)

    def manager(self, site: str, manager: str) -> str:
        return self._of(self.managers, site, manager) or manager

    def step(self, site: str, step: str) -> str:
        return self._of(self.steps, site, step) or step

    def team(self, site: str, team: str) -> str:
        return self._of(self.teams, site, team) or team

    def course(self, site: str, course: str) -> str:
        return self._of(self.courses, site, course) or course

    def kind(self, site: str, stratum: str) -> str:
        """A band's kind of client ("segment=vip") as people call it: the value's title ("VIP")."""
        name, _equals, value = stratum.partition("=")
        process = self.process_of.get(site)
        return process.value_title(name, value) if process else value


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def _site_and(obj: str) -> tuple[str, str]:
    site, _slash, rest = obj.partition("/")
    return site, rest


# --- an entry as a sentence ------------------------------------------------------------------------


def describe(_: Translator, entry: dict[str, Any], words: Words) -> str:
    """The entry in words, without its actor (the Who column) and its reason (the Why column): every
    action has a sentence in audit.toml (`audit.do.<action>`); an action without one, a generic one
    naming each detail in words. No Python value (list, dict, True, None) ever shows."""
    action, details = entry["action"], entry.get("details") or {}
    tell = SENTENCES.get(action)
    if tell is None and "." in action:
        tell = SENTENCES.get(action.split(".")[0] + ".*")
    try:
        text = tell(_, entry["object"], details, words) if tell else _generic(_, entry, details)
    except (AttributeError, IndexError, TypeError, ValueError):  # an entry written in another shape, long ago
        text = _generic(_, entry, details)
    if details.get("via"):
        text += " " + _("audit.via", who=details["via"])
    return text


def value(_: Translator, v: Any, name: str = "") -> str:
    """Any detail in words: durations (…_ms) in minutes, dates and times as such, yes/no, lists joined."""
    if v is None or v == "" or v == [] or v == {}:
        return _("audit.none")
    if isinstance(v, bool):
        return _("audit.yes") if v else _("audit.no")
    if isinstance(v, int | float) and name.endswith("_ms"):
        return _.minutes(v)
    if isinstance(v, int | float):
        return _.num(v, 0 if float(v).is_integer() else 1)
    if isinstance(v, list | tuple):
        return ", ".join(value(_, item, name) for item in v)
    if isinstance(v, dict):
        return "; ".join(f"{_label(_, k)} {value(_, item, k)}" for k, item in v.items())
    if isinstance(v, datetime):
        return _.datetime(v)
    if isinstance(v, date):
        return _.date(v)
    text = str(v)
    if name == "link" and urlsplit(text).netloc:  # the whole link is in the JSON and the CSV; here, where to
        return urlsplit(text).netloc  # a phone's column is as wide as its longest word
    if _ISO_TIME.match(text):
        return _.datetime(text)
    if _ISO_DAY.fullmatch(text):
        return _.date(text)
    return text


def _label(_: Translator, name: str) -> str:
    key = f"audit.field.{name}"
    try:
        return _(key)
    except KeyError:
        return name.replace("_ms", "").replace("_", " ")


def _change(_: Translator, name: str, before: Any, after: Any) -> str:
    return _("audit.change", what=_label(_, name), before=value(_, before, name), after=value(_, after, name))


def _generic(_: Translator, entry: dict[str, Any], details: dict[str, Any]) -> str:
    """An action without a sentence of its own: "<object> changed: field a → b; field c"."""
    parts = []
    for name, v in details.items():
        if isinstance(v, list) and len(v) == 2 and not any(isinstance(x, list | dict) for x in v):
            parts.append(_change(_, name, v[0], v[1]))
        else:
            parts.append(_("audit.field_is", what=_label(_, name), value=value(_, v, name)))
    what = _("audit.do.other", action=entry["action"], object=entry["object"])
    return what + (": " + "; ".join(parts) if parts else "")


def _pair(details: dict[str, Any], name: str) -> tuple[Any, Any]:
    v = details.get(name)
    return (v[0], v[1]) if isinstance(v, list) and len(v) == 2 else ("", v)


def _changes(_: Translator, before: dict[str, Any] | None, after: dict[str, Any], names: tuple[str, ...]) -> str:
    """The fields that changed, "maximum 6 min → 5 min; …"; all of them, when there was nothing before."""
    if not before:
        return "; ".join(_("audit.field_is", what=_label(_, n), value=value(_, after.get(n), n)) for n in names
                         if n in after)
    changed = [_change(_, n, before.get(n), after.get(n)) for n in names if before.get(n) != after.get(n)]
    return "; ".join(changed) or _("audit.unchanged")


# Each action: (translator, object, details, words) -> its sentence.
Tell = Callable[[Translator, str, dict[str, Any], Words], str]


def _user_add(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    extras = []
    if d.get("teams"):
        extras.append(_("audit.field_is", what=_label(_, "teams"), value=", ".join(
            w.team("", t) for t in d["teams"])))
    if d.get("manager_id"):
        extras.append(_("audit.as_manager", who=w.manager("", d["manager_id"])))
    if d.get("email"):
        extras.append(_("audit.field_is", what=_label(_, "email"), value=d["email"]))
    role = _(f"role.{d['role']}") if d.get("role") in ROLES else value(_, d.get("role"))
    text = _("audit.do.user.add", account=obj, role=role)
    return text + ("; " + "; ".join(extras) if extras else "")


def _user_language(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    language = d.get("language", "")
    return _("audit.do.user.language", account=obj,
             language=_(f"audit.language.{language}") if language in ("en", "ru") else value(_, language))


def _user_email(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    if d.get("email"):
        return _("audit.do.user.email", account=obj, email=d["email"])
    return _("audit.do.user.email_cleared", account=obj)


def _user_disable(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    tokens = d.get("tokens_revoked") or []
    text = _("audit.do.user.disable", account=obj, sessions=_.num(d.get("sessions_ended") or 0))
    return text + (" " + _("audit.tokens_revoked", tokens=", ".join(map(str, tokens))) if tokens else "")


def _team_add(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    site, team = _site_and(obj)
    return _("audit.do.team.add", team=d.get("title") or team, site=site)


def _team_assign(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    site, manager = _site_and(obj)
    before, after = _pair(d, "team")
    who = w.manager(site, manager)
    if before and after:
        return _("audit.do.team.assign", who=who, before=w.team(site, before), after=w.team(site, after))
    if after:
        return _("audit.do.team.join", who=who, after=w.team(site, after))
    return _("audit.do.team.leave", who=who, before=w.team(site, before) if before else _("audit.none"))


def _flag(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    kind = d.get("kind", "")
    kind_word = _(f"manager.kind.{kind}") if kind in ("slow", "fast", "systemic") else value(_, kind)
    step = w.step("", d.get("step", ""))
    whose = w.manager("", d["manager"]) if d.get("manager") else w.team("", d.get("team", ""))
    if not d.get("from"):
        return _("audit.do.flag_found", kind=kind_word, step=step, who=whose)
    return _("audit.do.flag", kind=kind_word, step=step, who=whose, before=_flag_status(_, d.get("from", "")),
             after=_flag_status(_, d.get("to", "")))


def _flag_status(_: Translator, status: str) -> str:
    return _(f"manager.flag.{status or 'new'}") if (status or "new") in FLAG_STATUSES else value(_, status)


def _site_add(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    return _("audit.do.site.add", site=obj, origins=value(_, d.get("origins")),
             identity=value(_, bool(d.get("require_identity"))))


def _site_cost(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    cost, currency = _pair(d, "cost_per_hour"), _pair(d, "currency")
    before = _.money(cost[0], currency[0]) if cost[0] else _("audit.none")
    after = _.money(cost[1], currency[1]) if cost[1] else _("audit.none")
    return _("audit.do.site.cost", site=obj, before=before, after=after)


BAND_FIELDS = ("min_ms", "reference_ms", "max_ms", "effective_from")


def _band(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    site, _slash, rest = obj.partition("/")
    step, _slash, team = rest.partition("/")
    kind = w.kind(site, d["stratum"]) if d.get("stratum") else ""  # a band for one kind of client
    if team:
        where = _("audit.do.band.kind_team" if kind else "audit.do.band.team", step=w.step(site, step),
                  team=w.team(site, team), kind=kind)
    else:
        where = _("audit.do.band.kind_every_team" if kind else "audit.do.band.every_team", step=w.step(site, step),
                  kind=kind)
    return where + ": " + _changes(_, d.get("before"), d.get("after") or {}, BAND_FIELDS)


def _manager_set(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    site, manager = _site_and(obj)
    name, email = _pair(d, "name"), _pair(d, "email")
    parts = [_change(_, "name", *name) if name[0] != name[1] else "",
             _change(_, "email", *email) if email[0] != email[1] else ""]
    return _("audit.do.manager.set", id=manager, site=site) + ": " + ("; ".join(p for p in parts if p)
                                                                       or _("audit.unchanged"))


def _process_load(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    site, process = _site_and(obj)
    steps = ", ".join(w.step(site, s) for s in d.get("steps") or [])
    return _("audit.do.process.load", process=process, site=site, version=_.num(d.get("version") or 0),
             steps=steps or _("audit.none"))


def _discovery_on(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    until = d.get("until")
    return _("audit.do.discovery.on", site=obj, days=_.plural("process.days", int(d.get("days") or 0),
                                                             n=_.num(int(d.get("days") or 0))),
             until=_.datetime(until) if until else "–")


def _note(_: Translator, obj: str, d: dict[str, Any], w: Words, key: str) -> str:
    site, _slash, rest = obj.partition("/")
    manager = rest.partition("/")[0]
    text = _(key, step=w.step(site, d.get("step", "")), who=w.manager(site, manager))
    if d.get("week"):
        text += " " + _("audit.note_week", week=_.date(d["week"]))
    elif d.get("flag_id"):
        text += " " + _("audit.note_flag")
    if d.get("text"):
        text += ": " + _("audit.quoted", text=d["text"])
    return text


def _course_add(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    site, course = _site_and(obj)
    shown = {"steps": [w.step(site, s) for s in d.get("steps") or []], "link": d.get("link"),
             "expected_minutes": d.get("expected_minutes") or None, "self_paced": bool(d.get("self_paced")),
             "retired": d.get("retired") or None}  # what is set: no "link none", no "retired no"
    return _("audit.do.course.add", course=d.get("title") or w.course(site, course), site=site) + ": " + _changes(
        _, None, {k: v for k, v in shown.items() if v not in (None, "", [])}, COURSE_FIELDS[1:])


COURSE_FIELDS = ("title", "steps", "link", "expected_minutes", "self_paced", "retired")


def _course_update(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    site, course = _site_and(obj)
    before, after = dict(d.get("before") or {}), dict(d.get("after") or {})
    for side in (before, after):
        side["steps"] = [w.step(site, s) for s in side.get("steps") or []]
    title = after.get("title") or w.course(site, course)
    return _("audit.do.course.update", course=title) + ": " + _changes(_, before, after, COURSE_FIELDS)


def _mentor_set(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    site, mentor = _site_and(obj)
    before, after = _pair(d, "steps")
    return _("audit.do.mentor.set", mentor=mentor, site=site) + ": " + _change(
        _, "steps", [w.step(site, s) for s in before or []], [w.step(site, s) for s in after or []])


def _manager_export(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    site, manager = _site_and(obj)
    files = d.get("files") or 0
    return _.plural("audit.do.manager.export", files, who=w.manager(site, manager), files=_.num(files))


def _manager_erase(_: Translator, obj: str, d: dict[str, Any], w: Words) -> str:
    rows = sum(v for v in (d.get("rows") or {}).values() if isinstance(v, int))
    return _.plural("audit.do.manager.erase", rows, site=_site_and(obj)[0], rows=_.num(rows))


def _coaching(_: Translator, obj: str, d: dict[str, Any], w: Words, event: str) -> str:
    a = w.assignments.get(obj)
    site = d.get("site") or (a.site if a else "")
    manager, step = d.get("manager") or (a.manager if a else ""), d.get("step") or (a.step if a else "")
    course, mentor = d.get("course_id") or (a.course_id if a else ""), d.get("mentor") or (a.mentor if a else "")
    if course:
        what = _("audit.coaching.course", course=w.course(site, course))
    elif mentor:
        what = _("audit.coaching.meeting", mentor=mentor)
    else:
        what = _("audit.coaching.some")
    subject = (_("audit.coaching.subject", what=what, who=w.manager(site, manager), step=w.step(site, step))
               if manager and step else _("audit.coaching.unknown"))
    key = f"audit.do.coaching.{event}"
    if event == "assigned":
        target = d.get("target") or {}
        text = _(key, subject=subject, due=_.date(d.get("due")))
        if target.get("max_ms"):
            days = target.get("within_days") or 0
            text += "; " + _.plural("audit.coaching.target", days, max=_.minutes(target["max_ms"]), days=_.num(days))
        return text + (": " + _("audit.quoted", text=d["note"]) if d.get("note") else "")
    if event == "scheduled":
        return _(key, subject=subject, at=_.datetime(d["meeting_at"]) if d.get("meeting_at") else _("audit.none"))
    if event in ("evaluated", "followed_up"):
        verdict = d.get("verdict") or ""
        words = (_(f"coaching.verdict_{verdict}") if verdict in ("improved", "no_change", "worse", "insufficient_data")
                 else value(_, verdict))
        text = _(key, subject=subject, verdict=words)
        if d.get("target_met") is not None:
            text += "; " + (_("coaching.target_met") if d["target_met"] else _("coaching.target_missed"))
        if d.get("post_median_ms") is not None:
            text += "; " + _("audit.field_is", what=_label(_, "post_median_ms"), value=_.minutes(d["post_median_ms"]))
        return text
    text = _(key, subject=subject)
    said = d.get("text") or d.get("note")
    return text + (": " + _("audit.quoted", text=said) if said else "")


def _simple(key: str) -> Tell:
    return lambda _, obj, d, w: _(key, account=obj, site=obj, token=d.get("name", ""))


def _with(tell: Callable[..., str], extra: str) -> Tell:
    return lambda _, obj, d, w: tell(_, obj, d, w, extra)


ROLES = ("admin", "director", "trainer", "manager")
FLAG_STATUSES = ("new", "open", "acknowledged", "coaching", "resolved", "dismissed")
COACHING_EVENTS = ("assigned", "scheduled", "done", "evaluated", "followed_up", "cancelled", "acknowledged", "asked",
                   "answered")

SENTENCES: dict[str, Tell] = {
    "user.add": _user_add,
    "user.passwd": _simple("audit.do.user.passwd"),
    "user.language": _user_language,
    "user.email": _user_email,
    "user.disable": _user_disable,
    "user.enable": _simple("audit.do.user.enable"),
    "token.add": _simple("audit.do.token.add"),
    "token.revoke": _simple("audit.do.token.revoke"),
    "team.add": _team_add,
    "team.assign": _team_assign,
    "flag.*": _flag,  # flag.<the status it went to>
    "site.add": _site_add,
    "site.enable": _simple("audit.do.site.enable"),
    "site.disable": _simple("audit.do.site.disable"),
    "site.cost": _site_cost,
    "band.set": _band,
    "manager.set": _manager_set,
    "process.load": _process_load,
    "discovery.on": _discovery_on,  # step discovery (kernel/discovery.py)
    "discovery.off": _simple("audit.do.discovery.off"),
    "note.add": _with(_note, "audit.do.note.add"),
    "note.withdraw": _with(_note, "audit.do.note.withdraw"),
    **{f"coaching.{event}": _with(_coaching, event) for event in COACHING_EVENTS},
    "course.add": _course_add,
    "course.update": _course_update,
    "mentor.set": _mentor_set,
    "manager.export": _manager_export,
    "manager.erase": _manager_erase,
}


def register(app: web.Application) -> None:
    add_page(app, "/audit", audit_page, roles=("admin", "director"), name="audit", query=(
        text("actor", "who acted"), text("action", "what was done, e.g. band.set"),
        text("object", "what it was done to"), day("since", "first day"), day("until", "last day")),
             response=answer(filters="object", entries="array", limit="integer"))
