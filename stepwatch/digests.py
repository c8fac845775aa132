"""The weekly digests: per director, what their teams lost and gained this week; per trainer, the
coaching that is due and overdue. docs/digests.md says what is sent, when and to whom.

A digest is composed from the figures the dashboards show (the overview's `decisions`, the flags
and the coaching assignments, read through the same functions) in the recipient's language, as
plain text and a simple HTML part, and queued in the outbox: an e-mail to the account's address
when SMTP is configured, a webhook message when a webhook is. Each is queued once per recipient,
site and ISO week (the outbox is asked first), so a second run in the same week sends nothing new.
This module lives in the application because it reads the dashboards' figures; the outbox (coaching)
delivers, with its retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from clickhouse_connect.driver.client import Client
from jinja2 import Environment

import coaching
from coaching import outbox
from coaching.lifecycle import CoachingAssignment
from dashboards import overview_figures
from dashboards.i18n import Translator
from dashboards.pages.overview import lookups
from kernel import sites, teams, users
from kernel.errors import NotFound
from kernel.flag_store import StoredFlag
from kernel.managers import display
from kernel.settings import Settings
from kernel.users import User

KINDS = ("director", "trainer")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
LISTED = 10  # items shown per list; the rest are behind the list's link
WAITING = ("assigned", "scheduled")  # what a trainer still has to do (done = waiting for its evaluation)


@dataclass(frozen=True)
class Item:
    """One line of a list: what it is, the figure beside it, and the page it opens."""

    label: str
    detail: str
    url: str
    tone: str = ""  # good or bad: the HTML colours the detail (the words say it in the text)


@dataclass(frozen=True)
class Section:
    title: str
    items: tuple[Item, ...]
    more: int = 0  # items left out of the list
    url: str = ""  # where the whole list is
    tone: str = ""  # bad: the HTML colours the title when the list is not empty (overdue)


@dataclass(frozen=True)
class Digest:
    kind: str  # director or trainer
    site: str
    account: str
    language: str
    email: str
    week: str  # ISO week, e.g. 2026-W49
    subject: str
    text: str
    html: str
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """What the outbox knows the digest by: one per recipient, site and week."""
        return f"digest:{self.kind}:{self.site}:{self.account}:{self.week}"


@dataclass(frozen=True)
class SendReport:
    composed: int = 0
    queued: int = 0  # outbox messages, e-mails and webhook messages
    already: int = 0  # messages queued by an earlier run this week, not queued again
    no_address: int = 0  # e-mail is configured but the account has no address
    digests: tuple[Digest, ...] = ()


def week_of(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def due(settings: Settings, now: datetime) -> bool:
    """Whether the week's digests are due at `now`: from DIGEST_DAY at DIGEST_HOUR to the end of the ISO
    week (a server that was down then sends them when it is back; the outbox keeps it to once)."""
    if settings.digest_day == "off":
        return False
    day = DAYS.index(settings.digest_day)
    return now.weekday() > day or (now.weekday() == day and now.hour >= settings.digest_hour)


def compose(client: Client, settings: Settings, now: datetime | None = None, *, site: str | None = None,
            to: str | None = None) -> list[Digest]:
    """Every digest of the week at `now`: each active director and trainer, each site (or `site`), or
    only the account `to`. A director gets one for every site with an analysis or a flag of their
    teams; a trainer only when something is due or overdue."""
    now = now or datetime.now(UTC)
    accounts = [u for u in users.list_users(client) if not u.disabled and u.role in KINDS
                and (to is None or u.name == to)]
    if to is not None and not accounts:
        raise NotFound(f"no active director or trainer named {to!r}")
    found: list[Digest] = []
    for s in sites.list_sites(client):
        if site is not None and s.name != site:
            continue
        for user in accounts:
            digest = (_director(client, settings, user, s.name, now) if user.role == "director"
                      else _trainer(client, settings, user, s.name, now))
            if digest is not None:
                found.append(digest)
    return found


def send(client: Client, settings: Settings, now: datetime | None = None, *, site: str | None = None,
         to: str | None = None, dry_run: bool = False) -> SendReport:
    """Compose the week's digests and queue each on every configured channel it has not been queued on
    this week; `dry_run` composes only."""
    digests = compose(client, settings, now, site=site, to=to)
    report = SendReport(composed=len(digests), digests=tuple(digests))
    if dry_run:
        return report
    queued = already = no_address = 0
    for d in digests:
        for channel in outbox.configured(settings):
            if channel == "email" and not d.email:
                no_address += 1
                continue
            if outbox.queued(client, d.key, channel):
                already += 1
                continue
            body: dict[str, Any] = {"type": f"digest.{d.kind}", "account": d.account, "language": d.language,
                                    "week": d.week, "subject": d.subject, "text": d.text}
            if channel == "email":
                body["html"] = d.html
            else:
                body["figures"] = d.figures
            outbox.enqueue(client, settings, site=d.site, topic=f"digest.{d.kind}", obj=d.key, body=body, now=now,
                           channel=channel, recipient=d.email if channel == "email" else "")
            queued += 1
    return SendReport(len(digests), queued, already, no_address, tuple(digests))


# -- a director's digest -------------------------------------------------------------------------------

def _director(client: Client, settings: Settings, user: User, site: str, now: datetime) -> Digest | None:
    found = lookups(client, user, site)
    if not found.team_names:
        return None  # leads no team of this site
    scope = found.scope
    managers, led = sorted(scope.managers or ()), sorted(scope.teams or ())
    flags = overview_figures.find_flags(client, site, teams=led, statuses=overview_figures.ACTIVE_STATUSES
                                        + ("resolved", "dismissed"), kind=overview_figures.DRAWDOWN_KINDS).flags
    if found.run is None and not flags:
        return None  # nothing analysed yet: nothing to say
    decided = overview_figures.decisions(client, site, now, found.run.window_end if found.run else None,
                                         managers=managers, teams=led)
    week_ago = now - timedelta(days=7)
    new = [f for f in flags if _aware(f.opened_at) >= week_ago]
    resolved = [f for f in flags if f.status == "resolved" and f.resolved_at and _aware(f.resolved_at) >= week_ago]
    outcomes = [a for a in coaching.list_assignments(client, site, user)
                if a.manager in (scope.managers or ()) and a.evaluated_at and _aware(a.evaluated_at) >= week_ago]
    outcomes.sort(key=lambda a: a.evaluated_at or now)
    _ = Translator(user.language)
    titles = {s["key"]: s["title"] for s in found.steps}
    team_titles = teams.list_teams(client, site)
    link = _Links(settings, site)

    def who(f: StoredFlag) -> str:
        if f.manager:
            return display(found.names, f.manager)
        return _.plural("digest.whole_team", len(f.managers), team=team_titles.get(f.team) or f.team,
                        n=len(f.managers))

    def flag_item(f: StoredFlag, key: str) -> Item:
        return Item(f"{who(f)}, {titles.get(f.step, f.step)}",
                    _(key, lost=_("unit.min", n=_.num(f.minutes_lost_per_week))),
                    link(f"/drawdowns/{quote(f.flag_id)}"))

    lost_s = decided["minutes_lost_per_week"] * 60
    previous = decided["minutes_lost_per_week_previous"]
    facts = [(_("digest.lost"), _("digest.lost_value", hours=_hours(_, lost_s), n=_.num(decided["drawdowns"])), "")]
    if previous is None:
        facts.append((_("digest.previous"), _("digest.previous_none"), ""))
    else:
        delta = round(lost_s / 3600, 1) - round(previous / 60, 1)  # as the reader sees the two figures
        more_or_less = "digest.less" if delta < 0 else "digest.more"
        change = "" if delta == 0 else _(more_or_less, hours=_hours(_, abs(delta) * 3600))
        facts.append((_("digest.previous"), _hours(_, previous * 60) + (f" ({change})" if change else ""),
                      "good" if delta < 0 else "bad" if delta > 0 else ""))
    if found.cost_per_hour is not None:
        facts.append((_("digest.cost"), _.money(lost_s / 3600 * found.cost_per_hour, found.currency), ""))
    sections = [
        _section(_("digest.new"), [flag_item(f, "digest.lost_item") for f in new], link("/drawdowns")),
        _section(_("digest.resolved"), [flag_item(f, "digest.was_lost_item") for f in resolved],
                 link("/drawdowns", status="resolved")),
        _section(_("digest.outcomes"), [_outcome(_, a, found.names, titles, link) for a in outcomes],
                 link("/coaching/effectiveness")),
    ]
    team_list = ", ".join(team_titles.get(t) or t for t in found.team_names)
    return _digest(
        "director", user, site, now, _,
        subject=_("digest.subject_director", site=site, hours=_hours(_, lost_s)),
        intro=_("digest.director_intro", site=site, teams=team_list, date=_.date(now.date())),
        facts=facts, note=_("digest.all_clear") if decided["drawdowns"] == 0 else "", sections=sections,
        action=(_("digest.open_overview"), link("/overview")),
        figures={"hours_lost_per_week": round(lost_s / 3600, 2),
                 "hours_lost_per_week_previous": None if previous is None else round(previous / 60, 2),
                 "drawdowns": decided["drawdowns"], "new_this_week": decided["new_this_week"],
                 "resolved_this_week": decided["resolved_this_week"],
                 "new": [_flag_figures(f, found.names, link) for f in new],
                 "resolved": [_flag_figures(f, found.names, link) for f in resolved],
                 "coaching_evaluated": [_assignment_figures(a, found.names, link) for a in outcomes]})


def _outcome(_: Translator, a: CoachingAssignment, names: dict[str, str], titles: dict[str, str],
             link: _Links) -> Item:
    detail = [_(f"coaching.verdict_{a.verdict}") if a.verdict else ""]
    if a.relative_effect_pct is not None:
        sign = "+" if a.relative_effect_pct > 0 else ""
        detail.append(_("digest.effect", change=sign + _.pct(a.relative_effect_pct / 100)))
    return Item(f"{display(names, a.manager)}, {titles.get(a.step, a.step)} ({_(f'coaching.kind_{a.kind}')})",
                ", ".join(d for d in detail if d), link(f"/coaching/assignments/{quote(a.assignment_id)}"),
                {"improved": "good", "worse": "bad"}.get(a.verdict or "", ""))


# -- a trainer's digest --------------------------------------------------------------------------------

def _trainer(client: Client, settings: Settings, user: User, site: str, now: datetime) -> Digest | None:
    today = now.date()
    mine = [a for a in coaching.list_assignments(client, site, user, mentor=user.name) if a.state in WAITING]
    overdue = sorted((a for a in mine if a.due < today), key=lambda a: a.due)
    soon = sorted((a for a in mine if today <= a.due < today + timedelta(days=7)), key=lambda a: a.due)
    if not overdue and not soon:
        return None  # nothing to do this week: no e-mail
    _ = Translator(user.language)
    found = lookups(client, user, site, with_run=False, with_bands=False)
    titles = {s["key"]: s["title"] for s in found.steps}
    link = _Links(settings, site)

    def item(a: CoachingAssignment) -> Item:
        detail = [_("digest.due_on", date=_.date(a.due))]
        if a.scheduled_for is not None:
            detail.append(_("digest.meeting_on", when=_.datetime(a.scheduled_for)))
        return Item(f"{display(found.names, a.manager)}, {titles.get(a.step, a.step)} "
                    f"({_(f'coaching.kind_{a.kind}')})", ", ".join(detail),
                    link(f"/coaching/assignments/{quote(a.assignment_id)}"))

    board = link("/coaching", mentor=user.name)
    return _digest(
        "trainer", user, site, now, _,
        subject=_("digest.subject_trainer", site=site, due=_.num(len(soon)), overdue=_.num(len(overdue))),
        intro=_("digest.trainer_intro", site=site, date=_.date(today)), facts=[], note="",
        sections=[_section(_("digest.overdue"), [item(a) for a in overdue], board, tone="bad"),
                  _section(_("digest.due"), [item(a) for a in soon], board)],
        action=(_("digest.open_board"), board),
        figures={"overdue": [_assignment_figures(a, found.names, link) for a in overdue],
                 "due": [_assignment_figures(a, found.names, link) for a in soon]})


# -- shared ----------------------------------------------------------------------------------------------

class _Links:
    """Absolute links when STEPWATCH_PUBLIC_URL is set (an e-mail needs them), paths otherwise."""

    def __init__(self, settings: Settings, site: str):
        self.base = (settings.public_url or "").rstrip("/")
        self.site = site

    def __call__(self, path: str, **query: str) -> str:
        return f"{self.base}{path}?{urlencode({'site': self.site, **query})}"


def _section(title: str, items: list[Item], url: str, tone: str = "") -> Section:
    return Section(title, tuple(items[:LISTED]), max(0, len(items) - LISTED), url, tone if items else "")


def _flag_figures(f: StoredFlag, names: dict[str, str], link: _Links) -> dict[str, Any]:
    return {"flag_id": f.flag_id, "kind": f.kind, "team": f.team, "step": f.step, "manager": f.manager or None,
            "manager_name": names.get(f.manager) if f.manager else None, "status": f.status,
            "minutes_lost_per_week": round(f.minutes_lost_per_week, 1), "url": link(f"/drawdowns/{quote(f.flag_id)}")}


def _assignment_figures(a: CoachingAssignment, names: dict[str, str], link: _Links) -> dict[str, Any]:
    return {"assignment_id": a.assignment_id, "manager": a.manager, "manager_name": names.get(a.manager),
            "step": a.step, "kind": a.kind, "state": a.state, "due": a.due.isoformat(), "verdict": a.verdict,
            "relative_effect_pct": a.relative_effect_pct,
            "url": link(f"/coaching/assignments/{quote(a.assignment_id)}")}


def _digest(kind: str, user: User, site: str, now: datetime, _: Translator, *, subject: str, intro: str,
            facts: list[tuple[str, str, str]], note: str, sections: list[Section], action: tuple[str, str],
            figures: dict[str, Any]) -> Digest:
    subject = subject.replace("\u00a0", " ")  # a subject never wraps; a no-break space would make it an encoded word
    context = {"_": _, "hello": _("digest.hello", name=user.name), "intro": intro, "facts": facts, "note": note,
               "sections": sections, "action": action, "footer": _("digest.footer"), "language": _.language,
               "subject": subject, "colour": {"good": "#1a7f37", "bad": "#cf222e", "": "#1f2328"}}
    return Digest(kind, site, user.name, _.language, user.email, week_of(now), subject,
                  _TEXT.render(context).strip() + "\n", _HTML.render(context), figures)


_PLAIN = Environment(autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_ESCAPED = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)

_TEXT = _PLAIN.from_string("""{{ hello }}
{{ intro }}
{% if facts %}

{% for label, value, tone in facts %}
{{ label }}: {{ value }}
{% endfor %}
{% endif %}
{% if note %}

{{ note }}
{% endif %}
{% for s in sections %}

{{ s.title }}:{% if not s.items %} {{ _("digest.none") }}{% endif %}

{% for i in s.items %}
- {{ i.label }}: {{ i.detail }}
  {{ i.url }}
{% endfor %}
{% if s.more %}
  … +{{ s.more }}: {{ s.url }}
{% endif %}
{% endfor %}

{{ action[0] }}: {{ action[1] }}

--
{{ footer }}
""")

# Inline styles only: mail clients drop <style> blocks and never run scripts.
_HTML = _ESCAPED.from_string("""<!DOCTYPE html>
<html lang="{{ language }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{ subject }}</title></head>
<body style="margin:0;padding:16px;background:#f5f6f8;font-family:Arial,Helvetica,sans-serif;color:#1f2328;">
<div style="max-width:640px;margin:0 auto;background:#ffffff;border:1px solid #d8dce1;border-radius:6px;padding:20px;">
<p style="margin:0 0 4px 0;">{{ hello }}</p>
<p style="margin:0 0 16px 0;color:#57606a;">{{ intro }}</p>
{% if facts %}
<table role="presentation" style="border-collapse:collapse;margin:0 0 16px 0;">
{% for label, value, tone in facts %}
<tr><td style="padding:2px 16px 2px 0;color:#57606a;">{{ label }}</td>
<td style="padding:2px 0;font-weight:bold;color:{{ colour[tone] }};">{{ value }}</td></tr>
{% endfor %}
</table>
{% endif %}
{% if note %}<p style="margin:0 0 16px 0;color:#1a7f37;">{{ note }}</p>{% endif %}
{% for s in sections %}
<h2 style="font-size:16px;margin:20px 0 6px 0;color:{{ colour[s.tone] }};">{{ s.title }}</h2>
{% if s.items %}
<ul style="margin:0;padding-left:20px;">
{% for i in s.items %}
<li style="margin:0 0 6px 0;"><a href="{{ i.url }}" style="color:#0969da;">{{ i.label }}</a>:
<span style="color:{{ colour[i.tone] }};">{{ i.detail }}</span></li>
{% endfor %}
</ul>
{% if s.more %}
<p style="margin:4px 0 0 0;"><a href="{{ s.url }}" style="color:#0969da;">… +{{ s.more }}</a></p>
{% endif %}
{% else %}
<p style="margin:0;color:#57606a;">{{ _("digest.none") }}</p>
{% endif %}
{% endfor %}
<p style="margin:24px 0 0 0;"><a href="{{ action[1] }}" style="display:inline-block;padding:8px 14px;
background:#0969da;color:#ffffff;text-decoration:none;border-radius:4px;">{{ action[0] }}</a></p>
<p style="margin:24px 0 0 0;font-size:12px;color:#57606a;">{{ footer }}</p>
</div></body></html>
""")


def _aware(moment: datetime) -> datetime:
    """The storage gives UTC times without their zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _hours(_: Translator, seconds: float) -> str:
    """Hours however many there are ('62.5 h', never '2.6 d'): a week's loss is read in hours."""
    return _("unit.h", n=_.num(seconds / 3600, 1))
