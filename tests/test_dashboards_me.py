"""My figures (/me): attention first or an all-clear in words, each step against the manager's own
previous weeks, teammates' figures only over enough people, the transparency facts from the real
settings, and a manager's notes: written only about themselves, read by those who see them."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest

import coaching
from coaching.lifecycle import Target
from dashboards.i18n import Translator
from kernel import audit, notes, storage, teams, users
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.coaching_helpers import add_sessions, build_org, sign_in, today
from tests.dashboard_data import make_flag, stats_row, store_pair_stats
from tests.web_helpers import SECRET

STEPS = ["identification", "needs", "products", "offer", "contract", "payment", "closing"]


@pytest.fixture
def org(client: storage.Client, site: Any) -> Any:
    return build_org(client, site.name)


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, org: Any) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={
        "secret_key": SECRET, "analysis_interval_s": 0, "retention_days": 123})))


def analysed(client: storage.Client, site: str, rows: list[dict[str, Any]]) -> None:
    store_pair_stats(client, site, rows, today() - timedelta(days=13), today())


def on_track(site: str, manager: str, steps: list[str], team: str = "north") -> list[dict[str, Any]]:
    return [stats_row(site, team, manager, step, 100_000) for step in steps]


def text_of(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.mark.parametrize(("judged", "en", "ru"), [
    (3, "All 3 steps within their bands.", "Все 3 шага в пределах норм."),
    (5, "All 5 steps within their bands.", "Все 5 шагов в пределах норм."),
])
async def test_an_all_clear_is_said_in_words_with_the_plural_of_each_language(
        api: Any, client: storage.Client, org: Any, judged: int, en: str, ru: str) -> None:
    analysed(client, org.site, on_track(org.site, "m-1", STEPS[:judged]))
    await sign_in(api, "max")
    data = await (await api.get("/api/v1/me")).json()
    assert data["attention"]["all_clear"] is True and data["attention"]["steps_judged"] == judged
    assert data["attention"]["drawdowns"] == [] and data["attention"]["watch"] == []
    page = text_of(await (await api.get("/me")).text())
    assert en in page and "Needs your attention" not in page
    assert f"{7 - judged} steps have too few sessions or no band yet" in page
    users.set_language(client, "max", "ru", actor="test")
    await sign_in(api, "max")
    assert ru in text_of(await (await api.get("/me")).text())


async def test_the_page_opens_with_the_managers_drawdowns_and_watches(api: Any, client: storage.Client,
                                                                      org: Any) -> None:
    watch = {**stats_row(org.site, "north", "m-1", "needs", 200_000), "status": "watch",
             "minutes_above_reference_per_week": 42.0}
    analysed(client, org.site, [*on_track(org.site, "m-1", ["offer", "closing"]), watch])
    flag = make_flag(client, org.site, manager="m-1", step="offer", minutes_lost=61.0)
    make_flag(client, org.site, manager="m-2", step="closing")  # a colleague's: not on max's page
    await sign_in(api, "max")
    data = await (await api.get("/api/v1/me")).json()
    a = data["attention"]
    assert a["all_clear"] is False
    assert [(d["flag_id"], d["step_title"], d["minutes_lost_per_week"]) for d in a["drawdowns"]] == [
        (flag.flag_id, "Offer", 61.0)]
    assert [w["step"] for w in a["watch"]] == ["needs"]
    html = await (await api.get("/me")).text()
    page = text_of(html)
    assert page.index("Needs your attention") < page.index("Step by step") < page.index("What stepwatch measures")
    assert "about 61 min a week above the band" in page and "since" in page
    assert "drifting toward the maximum" in page and "All 3 steps" not in page


async def test_each_step_is_set_against_the_managers_own_previous_four_weeks(api: Any, client: storage.Client,
                                                                            org: Any) -> None:
    end = today()
    add_sessions(client, org.site, "m-1", end - timedelta(days=41), end - timedelta(days=14), 300, sigma=0.05)
    add_sessions(client, org.site, "m-1", end - timedelta(days=13), end, 200, sigma=0.05, seed=1)
    storage.refresh_session_steps(client, org.site)
    await sign_in(api, "max")
    data = await (await api.get("/api/v1/me")).json()
    previous = data["comparison"]["offer"]["previous"]
    assert previous["n"] > 0 and previous["median_ms"] == pytest.approx(300_000, rel=0.05)
    assert previous["trend"] == "faster" and previous["change"] == pytest.approx(-1 / 3, abs=0.05)
    assert data["comparison"]["closing"]["previous"]["trend"] is None  # no sessions before
    assert "faster than before" in text_of(await (await api.get("/me")).text())


async def test_teammates_figures_only_over_at_least_peer_group_min_people(api: Any, client: storage.Client,
                                                                         org: Any) -> None:
    # north: m-1 (max) and three teammates: fewer than 5 people, so no teammates' figure at all
    rows = [stats_row(org.site, "north", m, "offer", 100_000 + 10_000 * i) for i, m in enumerate(
        ["m-1", "m-2", "m-3", "m-4"])]
    analysed(client, org.site, rows)
    await sign_in(api, "max")
    data = await (await api.get("/api/v1/me")).json()
    assert all(c["teammates"] is None for c in data["comparison"].values())
    assert "Teammates' typical median" not in text_of(await (await api.get("/me")).text())
    # two more teammates: five with enough sessions, the figure is their medians' middle, without names
    teams.assign(client, org.site, "north", ["m-5", "m-6"], actor="test")
    analysed(client, org.site, rows + [stats_row(org.site, "north", m, "offer", 200_000) for m in ("m-5", "m-6")])
    data = await (await api.get("/api/v1/me")).json()
    assert data["comparison"]["offer"]["teammates"] == {"median_ms": 130_000, "people": 5}
    html = text_of(await (await api.get("/me")).text())
    typical = Translator("en").minutes(130_000).replace("\xa0", " ")  # text_of reads every space as one
    assert "Teammates' typical median" in html and typical + " (5 people)" in html
    assert not re.search(r"\bm-[2-6]\b", html)


async def test_what_is_measured_comes_from_the_real_settings_and_names_who_sees(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    await sign_in(api, "max")
    t = (await (await api.get("/api/v1/me")).json())["transparency"]
    assert t["retention_days"] == 123 and t["idle_after_ms"] == 30_000
    assert t["seen_by"] == {"you": "max", "admins": ["ada"], "directors": ["dana"], "trainers": []}
    assert t["collected"]["never"] == ["page_text", "keystrokes", "form_fields", "titles"]
    assert t["automatic_decisions"] is False
    page = text_of(await (await api.get("/me")).text())
    assert "123 days; older records are deleted." in page and "nothing happens for more than 30 s" in page
    assert "The directors of your team: dana" in page and "Your trainers: none" in page
    assert "Only you, your director and your trainer" not in page
    # a trainer given max to coach sees max's figures (access.scope_of), so the page names them
    coaching.assign(client, Settings(**{**settings.model_dump(), "analysis_interval_s": 0}), org.dana,
                    site=org.site, manager="m-1", step="offer", kind="mentor_meeting", mentor="tom",
                    due=today() + timedelta(days=10), target=Target(240_000, 30), note="")
    t = (await (await api.get("/api/v1/me")).json())["transparency"]
    assert t["seen_by"]["trainers"] == ["tom"]


async def test_the_retention_is_said_with_the_russian_plural(api: Any, client: storage.Client, org: Any) -> None:
    users.set_language(client, "max", "ru", actor="test")
    await sign_in(api, "max")
    assert "123 дня; более старые записи удаляются." in text_of(await (await api.get("/me")).text())


# --- notes ---------------------------------------------------------------------------------------

async def test_a_manager_notes_a_week_from_the_page_and_it_is_audited(api: Any, client: storage.Client,
                                                                     org: Any) -> None:
    token = await sign_in(api, "max")
    monday = today() - timedelta(days=today().weekday())
    response = await api.post("/me/notes", data={"csrf": token, "step": "offer", "week": monday.isoformat(),
                                                 "text": "Trained a new colleague", "form": "week"},
                              allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/me")
    html = await (await api.get(response.headers["Location"])).text()
    assert "Trained a new colleague" in html and "Your note is saved" in html
    [note] = (await (await api.get("/api/v1/me")).json())["notes"]
    assert (note["step"], note["week"], note["author"]) == ("offer", monday.isoformat(), "max")
    [entry] = audit.entries(client, action="note.add")
    assert entry.actor == "max" and entry.object == f"{org.site}/m-1/{note['note_id']}"


async def test_a_note_on_ones_own_flag_through_the_json_api(api: Any, client: storage.Client, org: Any) -> None:
    flag = make_flag(client, org.site, manager="m-1", step="offer")
    token = await sign_in(api, "max")
    response = await api.post("/api/v1/me/notes", json={"flag_id": flag.flag_id, "text": "CRM outage all week"},
                              headers={"X-CSRF-Token": token})
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["step"] == "offer" and answer["flag_id"] == flag.flag_id and answer["week"] is None


@pytest.mark.parametrize(("body", "field"), [
    ({"step": "offer", "week": "TODAY", "text": ""}, "text"),
    ({"step": "offer", "week": "TODAY", "text": "x" * (notes.MAX_TEXT + 1)}, "text"),
    ({"step": "nope", "week": "TODAY", "text": "a"}, "step"),
    ({"step": "offer", "week": "2026-13-01", "text": "a"}, "week"),
    ({"step": "offer", "text": "a"}, "week"),
    ({"step": "offer", "week": "NEXT", "text": "a"}, "week"),
    ({"flag_id": "COLLEAGUE", "text": "a"}, "flag_id"),
    ({"flag_id": "00000000-0000-4000-8000-000000000000", "text": "a"}, "flag_id"),
])
async def test_bad_input_is_a_4xx_naming_the_field(api: Any, client: storage.Client, org: Any, body: dict,
                                                   field: str) -> None:
    colleague = make_flag(client, org.site, manager="m-2", step="offer")
    fill = {"TODAY": today().isoformat(), "NEXT": (today() + timedelta(days=8)).isoformat(),
            "COLLEAGUE": colleague.flag_id}
    token = await sign_in(api, "max")
    response = await api.post("/api/v1/me/notes", json={k: fill.get(v, v) for k, v in body.items()},
                              headers={"X-CSRF-Token": token})
    assert response.status == 400, await response.text()
    answer = await response.json()
    assert answer.get("field") == field, answer
    assert notes.notes_of(client, org.site, ["m-1", "m-2"]) == []


async def test_a_refused_note_is_shown_next_to_its_form_with_the_words_kept(api: Any, org: Any) -> None:
    token = await sign_in(api, "max")
    response = await api.post("/me/notes", data={"csrf": token, "step": "offer", "week": today().isoformat(),
                                                 "text": "x" * (notes.MAX_TEXT + 1), "form": "week"},
                              allow_redirects=False)
    assert response.status == 303
    html = await (await api.get("/me")).text()
    assert f"A note is at most {notes.MAX_TEXT} characters" in html and 'aria-invalid="true"' in html


@pytest.mark.parametrize("name", ["dana", "ada", "tom"])
async def test_only_managers_write_notes(api: Any, client: storage.Client, org: Any, name: str) -> None:
    token = await sign_in(api, name)
    response = await api.post("/api/v1/me/notes", json={"step": "offer", "week": today().isoformat(),
                                                         "text": "about m-1"}, headers={"X-CSRF-Token": token})
    assert response.status == 403
    assert notes.notes_of(client, org.site, ["m-1", ""]) == []


async def test_a_manager_withdraws_only_their_own_notes(api: Any, client: storage.Client, org: Any) -> None:
    hers = notes.add_note(client, org.site, "m-2", step="offer", week=today(), text="mia's", actor="mia")
    token = await sign_in(api, "max")
    response = await api.post(f"/api/v1/me/notes/{hers.note_id}/withdraw", headers={"X-CSRF-Token": token})
    assert response.status == 404
    malformed = await api.post("/api/v1/me/notes/0/withdraw", headers={"X-CSRF-Token": token})
    assert malformed.status == 404 and (await malformed.json())["field"] == "note_id"
    mine = notes.add_note(client, org.site, "m-1", step="offer", week=today(), text="max's", actor="max")
    response = await api.post(f"/api/v1/me/notes/{mine.note_id}/withdraw", headers={"X-CSRF-Token": token})
    assert response.status == 200
    assert [n.text for n in notes.notes_of(client, org.site, ["m-1", "m-2"])] == ["mia's"]


async def test_the_director_reads_the_notes_on_the_manager_and_drawdown_pages(api: Any, client: storage.Client,
                                                                             org: Any) -> None:
    flag = make_flag(client, org.site, manager="m-1", step="offer")
    week = notes.add_note(client, org.site, "m-1", step="offer", week=today(), text="CRM outage", actor="max")
    on_flag = notes.add_note(client, org.site, "m-1", step="offer", flag_id=flag.flag_id,
                             text="Trained Mia that week", actor="max")
    notes.add_note(client, org.site, "m-1", step="closing", week=today(), text="other step", actor="max")
    await sign_in(api, "dana")
    data = await (await api.get("/api/v1/managers/m-1")).json()
    assert {n["text"] for n in data["notes"]} == {"CRM outage", "Trained Mia that week", "other step"}
    page = text_of(await (await api.get("/managers/m-1")).text())
    assert "Notes from" in page and "CRM outage" in page and "Manager's note: Trained Mia that week" in page
    detail = await (await api.get(f"/api/v1/drawdowns/{flag.flag_id}")).json()
    assert {n["note_id"] for n in detail["notes"]} == {week.note_id, on_flag.note_id}  # not the other step's
    html = await (await api.get(f"/drawdowns/{flag.flag_id}")).text()
    assert "What the manager noted" in html and f"?note={on_flag.note_id}" in html
    # the note picked as the reason is in the dismiss form's reason field
    html = await (await api.get(f"/drawdowns/{flag.flag_id}?note={on_flag.note_id}")).text()
    reason = re.search(r'<textarea id="reason-dismiss"[^>]*>([^<]*)</textarea>', html)
    assert reason and "Trained Mia that week" in reason.group(1) and "on this flag" in reason.group(1)


async def test_a_director_of_another_team_and_another_manager_read_no_notes(api: Any, client: storage.Client,
                                                                           org: Any) -> None:
    flag = make_flag(client, org.site, manager="m-1", step="offer")
    notes.add_note(client, org.site, "m-1", step="offer", flag_id=flag.flag_id, text="private-ish", actor="max")
    await sign_in(api, "sam")  # directs south
    assert (await api.get("/api/v1/managers/m-1")).status == 403
    assert (await api.get(f"/api/v1/drawdowns/{flag.flag_id}")).status == 403
    await sign_in(api, "mia")  # m-2, max's teammate
    assert (await api.get("/api/v1/managers/m-1")).status == 403
    assert "private-ish" not in await (await api.get("/api/v1/me")).text()


# --- figures said alike on every page ------------------------------------------------------------------


def steps_table(html: str) -> str:
    """The text of the "Step by step" section of /me."""
    return text_of(html.split('id="steps-heading"', 1)[1].split("</section>", 1)[0])


async def test_the_median_the_analysis_judged_is_named_under_the_measured_one(api: Any, client: storage.Client,
                                                                              org: Any) -> None:
    # The window's sessions as measured (about 3.3 min) against the analysis' median adjusted to the
    # team's mix of clients (4.0 min), which /overview and /drawdowns show: the page says which is which.
    end = today()
    add_sessions(client, org.site, "m-1", end - timedelta(days=13), end, 200, sigma=0.05, seed=1)
    storage.refresh_session_steps(client, org.site)
    row = {**stats_row(org.site, "north", "m-1", "offer", 240_000, n=60),
           "case_mix": {"method": "van_elteren", "median_ms": 200_000, "adjusted_median_ms": 240_000}}
    analysed(client, org.site, [row])
    await sign_in(api, "max")
    data = await (await api.get("/api/v1/me")).json()
    offer = next(s for s in data["steps"] if s["step"] == "offer")
    assert offer["median_ms"] == pytest.approx(200_000, rel=0.05)
    assert offer["analysis_median_ms"] == 240_000 and offer["like_for_like"] is True
    html = await (await api.get("/me")).text()
    table = steps_table(html)
    assert "analysis: 4.0 min at the team's client mix" in table
    assert "the median the analysis judged, the one the drawdowns and the overview show" in table
    # the details' table, from the same macro as the manager page
    assert "analysis: 4.0 min at the team's client mix" in text_of(html.split('id="summary-heading"', 1)[1])
    users.set_language(client, "max", "ru", actor="test")
    assert "по анализу: 4,0 мин при составе клиентов команды" in steps_table(await (await api.get("/me")).text())


async def test_no_judged_median_where_it_reads_as_the_measured_one(api: Any, client: storage.Client,
                                                                   org: Any) -> None:
    end = today()
    add_sessions(client, org.site, "m-1", end - timedelta(days=13), end, 200, sigma=0.05, seed=1)
    storage.refresh_session_steps(client, org.site)
    await sign_in(api, "max")
    measured = next(s for s in (await (await api.get("/api/v1/me")).json())["steps"] if s["step"] == "offer")
    analysed(client, org.site, [stats_row(org.site, "north", "m-1", "offer", measured["median_ms"], n=60)])
    table = steps_table(await (await api.get("/me")).text())
    assert "analysis:" not in table and "the median the analysis judged" not in table


async def test_a_change_against_the_previous_weeks_is_a_whole_percent_with_a_real_minus(
        api: Any, client: storage.Client, org: Any) -> None:
    end = today()
    add_sessions(client, org.site, "m-1", end - timedelta(days=41), end - timedelta(days=14), 300, sigma=0.05)
    add_sessions(client, org.site, "m-1", end - timedelta(days=13), end, 200, sigma=0.05, seed=1)
    storage.refresh_session_steps(client, org.site)
    await sign_in(api, "max")
    change = (await (await api.get("/api/v1/me")).json())["comparison"]["offer"]["previous"]["change"]
    table = steps_table(await (await api.get("/me")).text())
    assert f"faster than before (−{round(-change * 100)}%)" in table
    assert "(-" not in table


async def test_no_drawdowns_is_one_sentence_and_one_assignment_is_said_in_the_singular(
        api: Any, client: storage.Client, settings: Settings, org: Any) -> None:
    coaching.assign(client, Settings(**{**settings.model_dump(), "analysis_interval_s": 0}), org.dana,
                    site=org.site, manager="m-1", step="offer", kind="mentor_meeting", mentor="tom",
                    due=today() + timedelta(days=10), target=Target(240_000, 30), note="")
    await sign_in(api, "max")
    html = await (await api.get("/me")).text()
    flags = html.split('id="flags-heading"', 1)[1].split("</section>", 1)[0]
    assert "<table" not in flags and "CSV" not in flags
    assert text_of(flags).endswith("No drawdowns.") and text_of(flags).count("No drawdowns.") == 1
    history = text_of(html.split('id="coaching-heading"', 1)[1].split("</section>", 1)[0])
    assert "1 coaching assignment " in history + " " and "1 coaching assignments" not in history
    users.set_language(client, "max", "ru", actor="test")
    html = await (await api.get("/me")).text()
    assert "1 задание на обучение" in text_of(html.split('id="coaching-heading"', 1)[1])


def test_a_notes_label_stands_above_its_box() -> None:
    # A <label> then a <textarea> both inline put the label at the box's bottom-left: the box is a block.
    css = (Path(__file__).resolve().parent.parent / "dashboards" / "static" / "app.css").read_text()
    rules = re.findall(r"([^{}]+)\{([^}]*)\}", re.sub(r"/\*.*?\*/", "", css, flags=re.S))
    assert any(".note-form textarea" in [s.strip() for s in selector.split(",")]
               and re.search(r"display:\s*block", body) for selector, body in rules)
