"""A realistic demo organisation and history, with planted drawdowns whose truth is known.

`stepwatch demo` builds a site with the example sales process, teams of managers of different
skill, and weeks of service sessions in business hours: right-skewed step times with
day-of-week effects, idle and hidden time, checkpoints and a few duplicate deliveries (so the
exactly-once path is exercised), a few planted slow and fast drawdowns and, for coaching,
improvements after a date. Everything is written through the same storage functions the
collector uses. `--truth FILE` writes what was planted, for benchmarks and tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from clickhouse_connect.driver.client import Client

from kernel import band_versions, discovery, processes, sites, storage, teams
from kernel import managers as directory

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sales_desk.toml"
SITE = "demo"
# Typical visible time per step, in seconds, and how often a session goes through it.
STEP_SECONDS = {"identification": 70, "needs": 260, "products": 320, "offer": 240, "contract": 200,
                "payment": 100, "closing": 60}
# Sessions that go back from the offer to the needs: most managers now and then, one of them often.
REWORK_RATE, REWORKER_RATE = 0.04, 0.3
DAY_OF_WEEK = [1.08, 1.0, 0.98, 1.0, 0.95, 1.0, 1.0]  # Monday slowest, Friday quickest
TEAM_NAMES = ["north", "south", "east", "west"]
# The demo company works in Russian, as its people's names say: the titles of its teams, steps, courses
# and kinds of client are Russian too (data is in the company's language; the pages' words follow the reader).
TEAM_TITLES = {"north": "Север", "south": "Юг", "east": "Восток", "west": "Запад"}
STEP_TITLES = {"Sales desk": "Отдел продаж", "Client identification": "Знакомство с клиентом",
               "Needs assessment": "Выявление потребностей", "Product selection": "Подбор продукта",
               "Offer": "Предложение", "Contract": "Договор", "Payment": "Оплата", "Closing": "Завершение"}
# Case mix: the demo process declares two session attributes. A VIP client takes 60% longer on the
# consultative steps; most managers serve about one VIP in five, a few (none of the planted ones) three
# in five, so without comparing like with like they would look slow. Channels change no time.
DEMO_ATTRIBUTES = """
[attributes]
segment = ["vip", "regular"]
channel = ["phone", "email", "chat"]

[attribute_titles]
segment = "Сегмент клиента"
channel = "Канал"

[value_titles.segment]
vip = "VIP"
regular = "Обычный"

[value_titles.channel]
phone = "Телефон"
email = "Почта"
chat = "Чат"
"""
VIP_SHARE, VIP_HEAVY_SHARE = 0.2, 0.6
VIP_SLOWER = {"needs": 1.6, "products": 1.6, "offer": 1.6}
CHANNELS, CHANNEL_SHARES = ("phone", "email", "chat"), (0.5, 0.3, 0.2)
# The demo managers' names, in order of their ids (m-001, m-002, ...); a long one shows how pages wrap.
PEOPLE = ["Анна Петрова", "Борис Иванов", "Виктория Смирнова", "Григорий Кузнецов", "Дарья Соколова",
          "Евгений Попов", "Жанна Лебедева", "Захар Козлов", "Ирина Новикова", "Кирилл Морозов",
          "Александра Константинопольская-Воскресенская", "Максим Волков", "Наталья Алексеева", "Олег Павлов",
          "Полина Семёнова", "Роман Голубев", "Светлана Виноградова", "Тимур Богданов", "Ульяна Воробьёва",
          "Фёдор Фёдоров", "Христина Михайлова", "Эдуард Беляев", "Юлия Тарасова", "Ярослав Белов"]


@dataclass(frozen=True)
class Planted:
    manager: str
    step: str
    kind: str  # "slow", "fast" or "improvement"
    factor: float  # multiplies the manager's time on the step
    since: date


@dataclass
class DemoTruth:
    seed: int
    site: str
    managers: dict[str, str] = field(default_factory=dict)  # manager -> team
    skill: dict[str, float] = field(default_factory=dict)
    planted: list[Planted] = field(default_factory=list)
    vip_share: dict[str, float] = field(default_factory=dict)  # manager -> share of VIP sessions
    visits: int = 0
    sessions: int = 0


def process_text() -> str:
    """The example process (examples/sales_desk.toml) with the demo's Russian titles and its attributes."""
    text = EXAMPLE.read_text()
    for english, russian in STEP_TITLES.items():
        text = text.replace(f'title = "{english}"', f'title = "{russian}"')
    return text + DEMO_ATTRIBUTES


def exists(client: Client) -> bool:
    """Whether the store holds demo history already (the demo is not built twice)."""
    return bool(client.command("SELECT count() > 0 FROM step_visits WHERE site = {site:String}",
                               parameters={"site": SITE}))


def build(client: Client, *, seed: int = 7, managers: int = 24, days: int = 42,
          today: date | None = None, origin: str = "http://127.0.0.1:8000") -> DemoTruth:
    """Create the demo site, process, teams and history in the store behind `client`."""
    rng = np.random.default_rng(seed)
    today = today or datetime.now(UTC).date()
    truth = DemoTruth(seed=seed, site=SITE)
    if not any(s.name == SITE for s in sites.list_sites(client)):
        sites.add_site(client, SITE, [origin, origin.replace("127.0.0.1", "localhost")], actor="demo",
                       reason="демо-данные")
    processes.load(client, processes.parse(process_text(), SITE), actor="demo",
                   reason="демо-данные")

    names = [f"m-{i + 1:03d}" for i in range(managers)]
    team_count = max(1, min(len(TEAM_NAMES), managers // 6))
    existing = teams.list_teams(client, SITE)
    for t in TEAM_NAMES[:team_count]:
        if t not in existing:
            teams.add_team(client, SITE, t, TEAM_TITLES[t], actor="demo", reason="демо-данные")
    for i, name in enumerate(names):
        truth.managers[name] = TEAM_NAMES[i % team_count]
        truth.skill[name] = float(np.exp(rng.normal(0, 0.08)))
    for t in TEAM_NAMES[:team_count]:
        members = [m for m, team in truth.managers.items() if team == t]
        teams.assign(client, SITE, t, members, actor="demo", reason="демо-данные")
    directory.import_rows(client, SITE, [
        directory.ManagerRow(i + 1, name, PEOPLE[i % len(PEOPLE)] + (f" {i // len(PEOPLE) + 1}" if i >= len(PEOPLE)
                                                                     else ""))
        for i, name in enumerate(names)], actor="demo", reason="демо-данные")

    truth.planted = _plant(rng, names, today, days)
    truth.vip_share = _case_mix(truth)
    visit_rows: list[bytes] = []
    session_rows: list[bytes] = []
    for visits, session_events in _history(rng, truth, today, days):
        visit_rows += visits
        session_rows += session_events
        if len(visit_rows) >= 50_000:
            storage.insert_visits(client, b"\n".join(visit_rows))
            visit_rows = []
    storage.insert_visits(client, b"\n".join(visit_rows))
    storage.insert_session_events(client, b"\n".join(session_rows))
    _discovery(client, today)
    return truth


# Step discovery (docs/processes.md): on for the last days, the CRM pages no step matches counted.
UNMATCHED_PAGES = {"/clients/:id/documents": 40, "/clients/:id/calls": 25, "/clients/:id/history": 9, "/tasks": 3}


def _discovery(client: Client, today: date) -> None:
    discovery.switch_on(client, SITE, actor="demo", reason="демо-данные")
    for back in range(5, 0, -1):
        discovery.record(client, SITE, {pattern: views + back for pattern, views in UNMATCHED_PAGES.items()},
                         today - timedelta(days=back))


def set_bands(client: Client, truth: DemoTruth, today: date, days: int) -> int:
    """Give every step a band suggested from the weeks before anything was planted, as a director
    would after a pilot; returns how many steps got one."""
    from analysis.bands import BandError, suggest_band

    storage.refresh_session_steps(client, SITE)
    quiet_until = min((p.since for p in truth.planted if p.kind != "improvement"), default=today)
    since = today - timedelta(days=days)
    if (quiet_until - since).days < 7:
        quiet_until = today  # too short a history to leave the planted weeks out
    pairs = storage.session_step_times(client, SITE, since, quiet_until)
    count = 0
    for step in STEP_SECONDS:
        own = [p for p in pairs if p.step == step]
        if not own:
            continue
        times = np.concatenate([p.times_ms for p in own])
        managers = np.concatenate([np.full(p.times_ms.size, p.manager) for p in own])
        try:
            band = suggest_band(times, managers=managers).band
        except BandError:
            continue
        band_versions.add_version(client, SITE, step, "", band.min_ms, band.reference_ms, band.max_ms, since,
                                  actor="demo", reason="предложено по пилотным неделям")
        count += 1
    return count


def analyse_previous_week(client: Client, settings: Any, today: date) -> None:
    """Store the per-pair figures of an analysis of the week before, as a server running since then
    would have: the overview compares this week's time lost with it. Only the figures are kept: the
    flags are the current run's to open and date."""
    from stepwatch import analysis_run

    window = analysis_run.window_ending(today - timedelta(days=7), settings.analysis_window_days)
    analysis_run.save_stats(client, analysis_run.run_site(client, SITE, settings, window))


def _plant(rng: np.random.Generator, names: list[str], today: date, days: int) -> list[Planted]:
    steps = list(STEP_SECONDS)
    chosen = rng.permutation(len(names))
    planted = []
    count = max(1, len(names) // 8)
    for i in range(count):  # slow drawdowns that began three to four weeks ago: persistent by now
        planted.append(Planted(names[chosen[i]], str(rng.choice(steps)), "slow", float(rng.uniform(1.6, 2.0)),
                               today - timedelta(days=int(rng.integers(22, 30)))))
    for i in range(count, count + max(1, count // 2)):  # suspiciously fast: possible skipped work
        planted.append(Planted(names[chosen[i]], str(rng.choice(["needs", "contract", "offer"])), "fast",
                               float(rng.uniform(0.3, 0.45)), today - timedelta(days=days)))
    for i in range(count + max(1, count // 2), count + max(1, count // 2) + count):  # slow, then improved
        planted.append(Planted(names[chosen[i % len(names)]], str(rng.choice(steps)), "improvement", 0.8,
                               today - timedelta(days=10)))
    return planted


def _case_mix(truth: DemoTruth) -> dict[str, float]:
    """Each manager's share of VIP sessions: a few managers, none with a planted drawdown, serve many.
    Its own generator, so every other figure of the demo is drawn as before."""
    mix = np.random.default_rng(truth.seed + 2)
    planted = {p.manager for p in truth.planted}
    free = [m for m in truth.skill if m not in planted]
    heavy = {free[i] for i in mix.permutation(len(free))[:max(1, len(truth.skill) // 10)]} if free else set()
    return {m: VIP_HEAVY_SHARE if m in heavy else VIP_SHARE for m in truth.skill}


def _factor(truth: DemoTruth, manager: str, step: str, day: date) -> float:
    factor = 1.0
    for p in truth.planted:
        if p.manager == manager and p.step == step:
            if p.kind == "improvement":
                factor *= 1.5 if day < p.since else 1.5 * p.factor  # slow before, 20% better after
            elif day >= p.since:
                factor *= p.factor
    return factor


def _history(rng: np.random.Generator, truth: DemoTruth, today: date,
             days: int) -> Iterator[tuple[list[bytes], list[bytes]]]:
    prefix = b'{"site":"' + SITE.encode() + b'","source":"demo",'
    # Rework (the flow page): its own generator, so every other figure of the demo stays as it was.
    again = np.random.default_rng(truth.seed + 1)
    planted = {p.manager for p in truth.planted}
    reworker = next((m for m in truth.skill if m not in planted), "")
    clients = np.random.default_rng(truth.seed + 3)  # the sessions' attributes: their own generator too
    for offset in range(days, 0, -1):
        day = today - timedelta(days=offset)
        if day.weekday() >= 5:
            continue
        visits: list[bytes] = []
        session_events: list[bytes] = []
        for manager, skill in truth.skill.items():
            clock = datetime(day.year, day.month, day.day, 9, tzinfo=UTC).timestamp() + rng.uniform(0, 1800)
            for _ in range(int(rng.integers(6, 11))):
                session_id = str(uuid.uuid4())
                customer = uuid.uuid4().hex
                truth.sessions += 1
                vip = bool(clients.random() < truth.vip_share.get(manager, VIP_SHARE))
                channel = str(clients.choice(CHANNELS, p=CHANNEL_SHARES))
                session_events.append(_row(prefix, {"event_id": str(uuid.uuid4()), "action": "start",
                    "session_id": session_id, "manager": manager, "customer": customer, "process": "sales",
                    "at": round(clock, 3), "attributes": {"segment": "vip" if vip else "regular", "channel": channel}}))
                for step, seconds in STEP_SECONDS.items():
                    if step in ("contract", "payment") and rng.random() < 0.35:
                        break  # no sale: the session ends after the offer
                    typical = seconds * skill * DAY_OF_WEEK[day.weekday()] * _factor(truth, manager, step, day)
                    if vip:
                        typical *= VIP_SLOWER.get(step, 1.0)
                    visible = float(rng.lognormal(np.log(typical), 0.45))
                    idle = visible * float(rng.uniform(0.02, 0.2))
                    hidden = float(rng.exponential(8)) if rng.random() < 0.2 else 0.0
                    for report in _reports(rng, {
                        "visit_id": str(uuid.uuid4()), "manager": manager, "session_id": session_id,
                        "customer": customer, "process": "sales", "step": step,
                        "path": f"/clients/:customer/{step}", "started_at": round(clock, 3),
                        "active_ms": int((visible - idle) * 1000), "idle_ms": int(idle * 1000),
                        "hidden_ms": int(hidden * 1000), "tracker": "demo",
                    }):
                        visits.append(_row(prefix, report))
                    truth.visits += 1
                    clock += visible + hidden + float(rng.uniform(2, 20))
                    if step == "offer" and again.random() < (REWORKER_RATE if manager == reworker else REWORK_RATE):
                        clock = _back_to_needs(again, prefix, visits, truth, manager, session_id, customer, skill,
                                               clock)
                outcome = "sale" if rng.random() < 0.55 else "no_sale"
                session_events.append(_row(prefix, {"event_id": str(uuid.uuid4()), "action": "end",
                    "session_id": session_id, "manager": manager, "customer": customer, "process": "sales",
                    "at": round(clock, 3), "outcome": outcome}))
                clock += float(rng.uniform(60, 900))
        yield visits, session_events


def _back_to_needs(rng: np.random.Generator, prefix: bytes, visits: list[bytes], truth: DemoTruth, manager: str,
                   session_id: str, customer: str, skill: float, clock: float) -> float:
    """A client who asks for something else once the offer is made: back to the needs, then the offer again
    (a ping-pong the flow page shows), each a shorter visit than the first. Returns the clock after them."""
    for step, share in (("needs", 0.35), ("offer", 0.3)):
        visible = float(rng.lognormal(np.log(STEP_SECONDS[step] * share * skill), 0.4))
        idle = visible * 0.1
        visits.append(_row(prefix, {
            "visit_id": str(uuid.uuid4()), "seq": 0, "final": True, "manager": manager, "session_id": session_id,
            "customer": customer, "process": "sales", "step": step, "path": f"/clients/:customer/{step}",
            "started_at": round(clock, 3), "active_ms": int((visible - idle) * 1000), "idle_ms": int(idle * 1000),
            "hidden_ms": 0, "tracker": "demo"}))
        truth.visits += 1
        clock += visible + float(rng.uniform(2, 20))
    return clock


def _reports(rng: np.random.Generator, visit: dict[str, Any]) -> list[dict[str, Any]]:
    """The reports a tracker would send: sometimes checkpoints first, rarely a duplicate delivery."""
    final = {**visit, "seq": 0, "final": True}
    reports = []
    if rng.random() < 0.1:  # a checkpoint taken halfway, then the final report
        reports.append({**visit, "seq": 0, "final": False, "active_ms": visit["active_ms"] // 2,
                        "idle_ms": visit["idle_ms"] // 2, "hidden_ms": visit["hidden_ms"] // 2})
        final["seq"] = 1
    reports.append(final)
    if rng.random() < 0.01:
        reports.append(final)  # the same report delivered twice
    return reports


def _row(prefix: bytes, fields: dict[str, Any]) -> bytes:
    return prefix + orjson.dumps(fields)[1:]


def create_accounts(client: Client, truth: DemoTruth) -> list[tuple[str, str, str]]:
    """One account per role, with generated passwords: (name, role, password)."""
    from kernel import users

    first_team = sorted(set(truth.managers.values()))[0]
    first_manager = next(m for m, t in sorted(truth.managers.items()) if t == first_team)
    wanted = [("admin", "admin", (), ""), ("director", "director", tuple(sorted(set(truth.managers.values()))), ""),
              ("trainer", "trainer", (), ""), ("manager", "manager", (first_team,), first_manager)]
    logins = []
    existing = {u.name for u in users.list_users(client)}
    for name, role, teams_led, manager_id in wanted:
        if name in existing:
            continue
        password = users.new_password()
        users.add_user(client, name, role, password, teams=teams_led, manager_id=manager_id, actor="demo",
                       reason="демо-данные")
        logins.append((name, role, password))
    return logins


def write_truth(truth: DemoTruth, path: Path) -> None:
    data = asdict(truth)
    for p in data["planted"]:
        p["since"] = p["since"].isoformat()
    path.write_text(json.dumps(data, indent=2) + "\n")


COURSES = (  # title, steps, self-paced
    ("Как узнать клиента", ("identification",), True),
    ("Выявление потребностей", ("needs", "products"), True),
    ("Основы предложения", ("offer",), True),
    ("Договор, оплата и завершение", ("contract", "payment", "closing"), True),
    ("Практикум: предложение и договор", ("offer", "contract"), False),
)


def seed_coaching(client: Client, settings: Any, truth: DemoTruth, *, today: date | None = None) -> list[str]:
    """A coaching catalog and a few assignments: every planted improvement was coached with a
    self-paced course that ended the day before it, and is evaluated now (whatever the data says);
    slow drawdowns get a mentor meeting assigned from their flag, the first one scheduled. Call it
    after the analysis and create_accounts (it uses the director and trainer accounts when they
    exist). Returns the ids of the assignments made; makes none when the demo has some already."""
    from coaching import assignments, catalog, measure
    from coaching.lifecycle import Target
    from coaching.permissions import Operator
    from kernel import flag_store, users

    today = today or datetime.now(UTC).date()
    if assignments.list_assignments(client, SITE):
        return []
    demo = Operator("demo")
    accounts = {u.role: u for u in users.list_users(client) if not u.disabled}
    director, trainer = accounts.get("director", demo), accounts.get("trainer")
    existing = catalog.list_courses(client, SITE, include_retired=True)
    course_of: dict[str, catalog.Course] = {}
    for title, steps, self_paced in COURSES:
        course = next((c for c in existing if c.title == title), None)
        if course is None:
            course = catalog.add_course(client, demo, site=SITE, title=title, steps=list(steps), expected_minutes=60,
                                        self_paced=self_paced, link="https://lms.example.com/stepwatch-demo",
                                        reason="демо-данные")
        for step in steps:
            if course.self_paced:
                course_of[step] = course
    if trainer is not None:
        catalog.set_mentor(client, demo, site=SITE, name=trainer.name, steps=list(STEP_SECONDS), reason="демо-данные")
    made = []
    start = datetime(today.year, today.month, today.day, 9, tzinfo=UTC)
    for plant in (p for p in truth.planted if p.kind == "improvement"):
        course = course_of.get(plant.step)
        if course is None or course.retired:
            continue
        assigned = start - timedelta(days=(today - plant.since).days + 4)  # 4 days of coaching, then better
        a = assignments.assign(client, settings, director, site=SITE, manager=plant.manager, step=plant.step,
                               kind="course", course_id=course.course_id, due=assigned.date() + timedelta(days=3),
                               target=Target(int(STEP_SECONDS[plant.step] * 1000 * 1.3), 21), post_days=10,
                               note="медленно на этом шаге уже несколько недель", now=assigned)
        assignments.mark_done(client, settings, demo, a.assignment_id, now=assigned + timedelta(days=3, hours=8))
        measure.evaluate_assignment(client, settings, a.assignment_id, now=start)
        made.append(a.assignment_id)
    if trainer is not None:
        flags = [f for f in flag_store.current(client, SITE)
                 if f.kind == "slow" and f.status in ("open", "acknowledged")]
        for i, flag in enumerate(flags[:3]):
            a = assignments.assign(client, settings, director, site=SITE, manager=flag.manager, step=flag.step,
                                   kind="mentor_meeting", mentor=trainer.name, due=today + timedelta(days=7),
                                   target=Target(flag.reference_ms, 28), flag_id=flag.flag_id,
                                   note="назначено по просадке")
            if i == 0:
                assignments.schedule(client, settings, trainer, a.assignment_id, start + timedelta(days=1, hours=1))
            made.append(a.assignment_id)
    own = accounts.get("manager")  # the manager account sees coaching of its own: a course to take
    coached = {a.manager for a in assignments.list_assignments(client, SITE)}
    if own is not None and own.manager_id and own.manager_id not in coached and course_of:
        step = sorted(course_of)[0]
        a = assignments.assign(client, settings, director, site=SITE, manager=own.manager_id, step=step, kind="course",
                               course_id=course_of[step].course_id, due=today + timedelta(days=10),
                               target=Target(int(STEP_SECONDS[step] * 1000), 28), note="повторить основы")
        made.append(a.assignment_id)
    return made
