"""The audit page tells every entry as a sentence in the reader's language: managers by name, steps by
title, durations in minutes, dates as dates, no Python value; the JSON twin and the CSV keep the machine
values. Every action the code audits (found by reading the `audit.record` calls) has a sentence."""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from analysis.flags import FlagStatus
from coaching import assignments, catalog
from coaching.lifecycle import EVENT_TYPES, Target
from dashboards.i18n import LANGUAGES, Translator
from dashboards.pages import audit as page
from kernel import band_versions, flag_store, managers, sites, storage, teams, users
from kernel.settings import Settings
from stepwatch.analysis_run import ANALYSIS_ACTOR
from stepwatch.app import create_app
from tests.coaching_helpers import ROOT, build_org, sign_in, today
from tests.dashboard_data import make_flag
from tests.web_helpers import SECRET

ROOT_DIR = Path(__file__).resolve().parent.parent
UUID = "0b7e6c1a-2f43-4c4e-9d1e-5a1b2c3d4e5f"
# What a reader must never see: a Python list, dict, bool or None, a field name in milliseconds, a UUID.
PYTHON = re.compile(r"[\[\]{}]|\bTrue\b|\bFalse\b|\bNone\b|_ms\b|_id\b|'|[0-9a-f]{8}-[0-9a-f]{4}-")


def audited_actions() -> set[str]:
    """Every action the code passes to audit.record / audit.record_many (tests excluded); an f-string
    "flag.{status}" or "coaching.{type}" stands for each status or event type."""
    found: set[str] = set()
    for path in ROOT_DIR.rglob("*.py"):
        if any(part in (".venv", "tests", "node_modules") for part in path.relative_to(ROOT_DIR).parts):
            continue
        text = path.read_text()
        if "audit.record" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "audit"):
                continue
            if node.func.attr == "record":
                found.update(_actions(node.args[2], path))
            elif node.func.attr == "record_many":
                for inner in ast.walk(node.args[1]):
                    if isinstance(inner, ast.Tuple) and len(inner.elts) == 5:
                        found.update(_actions(inner.elts[1], path))
    return found


def _actions(node: ast.expr, path: Path) -> set[str]:
    if isinstance(node, ast.Constant):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _actions(node.body, path) | _actions(node.orelse, path)
    if isinstance(node, ast.JoinedStr) and isinstance(node.values[0], ast.Constant):
        prefix = node.values[0].value
        values = {"flag.": [s.value for s in FlagStatus], "coaching.": list(EVENT_TYPES)}.get(prefix)
        assert values is not None, f"{path}: an audited action built at run time ({prefix}…): list its values here"
        return {prefix + v for v in values}
    raise AssertionError(f"{path}:{node.lineno}: an audited action this test cannot read")


# One entry per action, its details as the code writes them (kernel/*, coaching/*, stepwatch/privacy.py).
SAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "user.add": ("max", {"role": "manager", "teams": ["north"], "manager_id": "m-1", "email": "max@example.com"}),
    "user.passwd": ("max", {}),
    "user.language": ("max", {"language": "ru"}),
    "user.email": ("max", {"email": ""}),
    "user.disable": ("max", {"sessions_ended": 2, "tokens_revoked": ["crm-sync"]}),
    "user.enable": ("max", {}),
    "token.add": ("max", {"name": "crm-sync"}),
    "token.revoke": ("max", {"name": "crm-sync", "id": "a1b2c3d4e5f6"}),
    "team.add": ("crm/east", {"title": "East"}),
    "team.assign": ("crm/m-1", {"team": ["", "north"]}),
    **{f"flag.{s.value}": (UUID, {"from": "open", "to": s.value, "kind": "slow", "step": "offer",
                                  "manager": "m-1", "team": "north"}) for s in FlagStatus},
    "site.add": ("crm", {"origins": ["https://crm.example.com"], "require_identity": False}),
    "site.enable": ("crm", {"enabled": [False, True]}),
    "site.disable": ("crm", {"enabled": [True, False]}),
    "site.cost": ("crm", {"cost_per_hour": [None, 30.0], "currency": ["", "EUR"]}),
    "band.set": ("crm/offer/north", {
        "before": {"min_ms": 60_000, "reference_ms": 180_000, "max_ms": 360_000, "effective_from": "2026-01-05"},
        "after": {"min_ms": 60_000, "reference_ms": 180_000, "max_ms": 300_000, "effective_from": "2026-03-02"}}),
    "manager.set": ("crm/m-1", {"name": ["", "Анна Петрова"], "email": ["", ""]}),
    "process.load": ("crm/sales_desk", {"version": 2, "steps": ["identification", "offer"]}),
    "discovery.on": ("crm", {"days": 7, "until": "2026-12-12T01:55:00+00:00"}),
    "discovery.off": ("crm", {}),
    "note.add": ("crm/m-1/" + UUID, {"step": "offer", "week": "2026-03-02", "flag_id": "", "text": "a hard week"}),
    "note.withdraw": ("crm/m-1/" + UUID, {"step": "offer"}),
    **{f"coaching.{t}": (UUID, {"state": ["assigned", t]}) for t in EVENT_TYPES},
    "coaching.assigned": (UUID, {
        "state": ["", "assigned"], "site": "crm", "manager": "m-1", "team": "north", "step": "offer", "kind": "course",
        "course_id": "offer-basics", "mentor": "", "self_paced": False, "due": "2026-03-20", "note": "", "flag_id": "",
        "pre_days": 14, "post_days": 14, "target": {"metric": "visible", "max_ms": 194_247, "within_days": 30}}),
    "coaching.scheduled": (UUID, {"state": ["assigned", "scheduled"], "meeting_at": "2026-03-10T10:00:00+00:00",
                                  "via": "cli:root"}),
    "coaching.evaluated": (UUID, {"state": ["done", "evaluated"], "checkpoint": 0, "verdict": "improved",
                                  "target_met": True, "relative_effect_pct": -12.5, "post_median_ms": 170_000}),
    "course.add": ("crm/offer-basics", {"title": "Offer basics", "steps": ["offer"],
                                        "link": "https://lms.example.com/courses/offer-basics?from=stepwatch",
                                        "expected_minutes": 45, "self_paced": True, "retired": False}),
    "course.update": ("crm/offer-basics", {
        "before": {"title": "Offer basics", "steps": ["offer"], "link": "", "expected_minutes": 45,
                   "self_paced": True, "retired": False},
        "after": {"title": "Offer basics", "steps": ["offer"], "link": "", "expected_minutes": 45,
                  "self_paced": False, "retired": True}}),
    "mentor.set": ("crm/tom", {"steps": [[], ["offer", "needs"]]}),
    "manager.export": ("crm/m-1", {"files": 9}),
    "manager.erase": ("crm/" + "ab" * 16, {"subject": "ab" * 16, "rows": {"sessions": 40, "flags": 2},
                                           "systemic_flags": 0, "audit_redacted": 1, "messages_redacted": 0,
                                           "spool_rows": 0}),
}

WORDS = page.Words(managers={"crm": {"m-1": "Анна Петрова"}},
                   steps={"crm": {"offer": "Offer", "needs": "Needs assessment", "identification": "Identification"}},
                   teams={"crm": {"north": "North", "east": "East"}}, courses={"crm": {"offer-basics": "Offer basics"}})


def tell(action: str, language: str) -> str:
    obj, details = SAMPLES[action]
    return plain(page.describe(Translator(language), {"action": action, "object": obj, "details": details}, WORDS))


def plain(text: str) -> str:
    """Babel's narrow and non-breaking spaces as plain ones, for comparing."""
    return text.replace("\u202f", " ").replace("\xa0", " ")


def test_every_audited_action_has_a_sentence_in_every_language() -> None:
    actions = audited_actions()
    assert {"band.set", "flag.dismissed", "coaching.assigned", "site.disable", "manager.erase"} <= actions
    for action in sorted(actions):
        assert action in page.SENTENCES or action.split(".")[0] + ".*" in page.SENTENCES, \
            f"{action}: give it a sentence (dashboards/pages/audit.py SENTENCES, audit.toml)"
        assert action in SAMPLES, f"{action}: add a sample entry to this test"
        said = {language: tell(action, language) for language in LANGUAGES}
        for language, text in said.items():
            assert not PYTHON.search(text), f"{action} ({language}): {text}"
            assert action not in text, f"{action} ({language}) falls back to the generic sentence: {text}"
        assert said["en"] != said["ru"], action


@pytest.mark.parametrize(("action", "language", "expected"), [
    ("band.set", "en", "Band of Offer for team North: maximum 6.0 min → 5.0 min; from Jan 5, 2026 → Mar 2, 2026"),
    ("band.set", "ru", "Норма шага Offer для команды North: максимум: 6,0 мин → 5,0 мин; действует с: 5 янв. 2026 г. → "
                       "2 мар. 2026 г."),
    ("team.assign", "en", "Анна Петрова joined team North"),
    ("flag.dismissed", "en", "Drawdown on Offer — Анна Петрова, slow: open → dismissed"),
    ("flag.dismissed", "ru", "Просадка на шаге Offer — Анна Петрова, медленная работа: открыта → отклонена"),
    ("coaching.assigned", "en", "Course “Offer basics” for Анна Петрова on Offer assigned, due Mar 20, 2026; "
                                "target: 3.2 min at most, within 30 days"),
    ("coaching.assigned", "ru", "Курс «Offer basics» — Анна Петрова, шаг Offer: назначено, срок 20 мар. 2026 г.; "
                                "цель: не более 3,2 мин в течение 30 дней"),
    ("coaching.scheduled", "en", "A coaching assignment scheduled for Mar 10, 2026, 10:00 AM UTC (through cli:root)"),
    ("course.update", "en", "Course “Offer basics” changed: self-paced yes → no; retired no → yes"),
    ("course.update", "ru", "Изменён курс «Offer basics»: самостоятельно: да → нет; снят: нет → да"),
    ("course.add", "en", "Course “Offer basics” added on site crm: steps Offer; link lms.example.com; "
                         "expected minutes 45; self-paced yes"),
    ("mentor.set", "en", "Steps mentored by tom on site crm: steps none → Offer, Needs assessment"),
    ("site.cost", "en", "Cost of a manager’s hour on site crm: none → €30"),
    ("user.add", "en", "Account max created, role manager; teams North; signs in as manager Анна Петрова; "
                       "e-mail max@example.com"),
])
def test_a_sentence_says_the_change_in_units(action: str, language: str, expected: str) -> None:
    assert tell(action, language) == expected


def test_an_action_without_a_sentence_still_reads_without_python_values() -> None:
    _ = Translator("en")
    entry = {"action": "team.review", "object": "crm/north",
             "details": {"managers": ["m-1", "m-2", "m-3"], "closed": [False, True], "max_ms": [240_000, 180_000],
                         "on": "2026-03-02", "extra": {"a": None}}}
    text = page.describe(_, entry, WORDS)
    assert plain(text) == ("team.review on crm/north: managers m-1, m-2, m-3; closed no → yes; "
                           "maximum 4.0 min → 3.0 min; on Mar 2, 2026; extra a none")
    assert not PYTHON.search(text.replace("team.review", ""))


def test_an_entry_of_an_unexpected_shape_falls_back_to_the_generic_sentence() -> None:
    entry = {"action": "band.set", "object": "crm/offer", "details": {"after": [1, 2, 3], "before": "x"}}
    assert plain(page.describe(Translator("en"), entry, WORDS)) == "band.set on crm/offer: after 1, 2, 3; before x"


@pytest.fixture
async def web(aiohttp_client: Any, settings: Settings, client: storage.Client) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


async def test_the_page_tells_real_changes_in_the_readers_language_and_the_json_keeps_the_values(
        web: Any, client: storage.Client, settings: Settings, site: sites.Site) -> None:
    org = build_org(client, site.name)
    managers.set_manager(client, "crm", "m-1", name="Анна Петрова", actor="ada", reason="HR export")
    band_versions.add_version(client, "crm", "offer", "north", 60_000, 180_000, 360_000, date(2026, 1, 5),
                              actor="ada", reason="first band")
    band_versions.add_version(client, "crm", "offer", "north", 60_000, 180_000, 300_000, date(2026, 3, 2),
                              actor="ada", reason="new script")
    flag = make_flag(client, "crm", team="north", manager="m-1", step="offer", status="acknowledged")
    flag_store.record_event(client, replace(flag, status="open"), "", "open", actor=ANALYSIS_ACTOR,
                            reason="slower than the team's other managers (q = 0.003); began on 2026-11-05")
    coached = assignments.assign(client, settings, org.dana, site="crm", manager="m-1", step="offer", kind="course",
                                 course_id="offer-basics", due=today() + timedelta(days=7),
                                 target=Target(max_ms=194_247, within_days=30), flag_id=flag.flag_id)
    teams.assign(client, "crm", "south", ["m-1"], actor="ada", reason="moved")
    catalog.update_course(client, ROOT, "crm", "offer-basics", self_paced=False, reason="now with a trainer")
    sites.set_cost(client, "crm", 30, "EUR", actor="ada", reason="finance")

    await sign_in(web, "ada")
    html = await (await web.get("/audit")).text()
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    cells = [plain(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r'<td class="audit-what">(.*?)</td>', body)]
    assert "Band of Offer for team north: maximum 6.0 min → 5.0 min; from Jan 5, 2026 → Mar 2, 2026" in cells
    assert "Анна Петрова moved from team north to team south" in cells
    assert "Drawdown on Offer — Анна Петрова, slow: open → acknowledged" in cells
    assert "Drawdown found on Offer — Анна Петрова, slow" in cells  # the analysis opened it: no "new → open"
    assert any(c.startswith("Course “Offer basics” for Анна Петрова on Offer assigned, due ") for c in cells)
    assert "Course “Offer basics” changed: self-paced yes → no" in cells
    assert "Cost of a manager’s hour on site crm: none → €30" in cells
    assert "Manager m-1 on site crm: name none → Анна Петрова" in cells
    assert "<td>new script</td>" in body
    # a flag's reasons as on its history: the analysis' English in words, an assignment's id as a link
    assert "<td>The analysis found the drawdown.</td>" in body and "q = 0.003" not in body
    assert f'<td><a href="/coaching/assignments/{coached.assignment_id}">Coaching assigned</a></td>' in body
    assert "Drawdown on Offer — Анна Петрова, slow: acknowledged → in coaching" in cells
    # the sentence links to what it is about: the assignment, the manager's page
    assert f'<a href="/coaching/assignments/{coached.assignment_id}">Course “Offer basics” for' in body
    assert '<a href="/managers/m-1?site=crm">Manager m-1 on site crm: name none → Анна Петрова</a>' in body
    assert not PYTHON.search(" ".join(cells)), [c for c in cells if PYTHON.search(c)]
    assert "<code>" not in body and "kv" not in body
    # just now: said relative to now, the absolute moment in the tooltip; the machine's moment in datetime=
    assert re.search(r'<time datetime="[0-9-]+T[0-9:.]+\+00:00" title="[A-Z][a-z]{2} \d+, \d{4}[^"]*">'
                     r'(in 0 seconds|\d+ seconds? ago|1 minute ago)</time>', body), body[:400]

    users.set_language(client, "ada", "ru", actor="ada")
    html = await (await web.get("/audit")).text()
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    cells = [plain(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r'<td class="audit-what">(.*?)</td>', body)]
    assert ("Норма шага Offer для команды north: максимум: 6,0 мин → 5,0 мин; действует с: 5 янв. 2026 г. → "
            "2 мар. 2026 г.") in cells
    assert "Анна Петрова: переход из команды north в команду south" in cells
    assert "Язык учётной записи ada: русский" in cells
    assert re.search(r'title="[^"]*">(\d+ секунд[уы]? назад|через 0 секунд|1 минуту назад)</time>', body), body[:400]
    assert not PYTHON.search(" ".join(cells)), [c for c in cells if PYTHON.search(c)]

    entries = (await (await web.get("/api/v1/audit", params={"action": "band.set"})).json())["entries"]
    assert entries[0]["details"]["after"] == {"min_ms": 60_000, "reference_ms": 180_000, "max_ms": 300_000,
                                              "effective_from": "2026-03-02"}
    assert "sentence" not in entries[0] and set(entries[0]) == {"at", "actor", "action", "object", "reason",
                                                                 "details", "object_name"}
    csv = await (await web.get("/audit", params={"format": "csv", "action": "band.set"})).text()
    assert "300000" in csv and "2026-03-02" in csv


def test_a_band_for_one_kind_of_client_names_the_kind_by_its_title(client: storage.Client,
                                                                   site: sites.Site) -> None:
    from kernel import audit, processes
    from tests.test_processes import EXAMPLE

    kinds = ('\n[attributes]\nsegment = ["vip", "regular"]\n\n[value_titles.segment]\nvip = "VIP"\n'
             'regular = "Обычный"\n')
    processes.load(client, processes.parse(EXAMPLE.read_text() + kinds, "crm"), actor="test")
    teams.add_team(client, "crm", "north", title="Север", actor="test")
    for team, stratum, high in [("north", "segment=vip", 360_000), ("north", "segment=vip", 300_000),
                                ("", "segment=regular", 240_000), ("north", "", 300_000)]:
        band_versions.add_version(client, "crm", "offer", team, 60_000, 180_000, high, date(2026, 1, 5), actor="ada",
                                  reason="r", stratum=stratum)
    rows = [{"action": e.action, "object": e.object, "details": e.details}
            for e in reversed(audit.entries(client, action="band.set"))]
    words = page.Words.of(client, rows)
    told = {language: [plain(page.describe(Translator(language), row, words)) for row in rows]
            for language in ("en", "ru")}
    assert told["en"][1] == "Band of Offer for team Север, VIP clients: maximum 6.0 min → 5.0 min"
    assert told["en"][2].startswith("Band of Offer for every team, Обычный clients: minimum 1.0 min; ")
    # a band for every kind is told as before, and its "before" is not the VIP band's
    assert told["en"][3].startswith("Band of Offer for team Север: minimum 1.0 min; reference 3.0 min; ")
    assert told["ru"][1] == "Норма шага Offer для команды Север, клиенты «VIP»: максимум: 6,0 мин → 5,0 мин"
    assert told["ru"][2].startswith("Норма шага Offer для всех команд, клиенты «Обычный»: ")
    assert not any(PYTHON.search(t) or "segment" in t for t in told["en"] + told["ru"])
