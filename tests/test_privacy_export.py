"""Export: everything stored about one manager as a ZIP of CSV files with a README, for the manager
themselves (`GET /api/v1/me/export`) and, on the host, for an admin (`stepwatch managers export`)."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kernel import managers, notes, storage
from kernel.settings import Settings
from stepwatch import privacy
from stepwatch.app import create_app
from tests.dashboard_data import make_flag, served, store_events
from tests.figures_helpers import TODAY, build
from tests.web_helpers import SECRET, login, page_csrf

FILES = {"README.txt", "directory.csv", "teams.csv", "accounts.csv", "visits.csv", "sessions.csv", "session_steps.csv",
         "session_days.csv", "step_days.csv", "session_paths.csv", "figures.csv", "flags.csv", "flag_history.csv",
         "coaching.csv", "coaching_evaluations.csv", "audit.csv", "notes.csv"}


@pytest.fixture
def built(client: storage.Client, settings: Settings, site: Any) -> storage.Client:
    """figures_helpers.build (m1 is max's id; m2 flagged slow and coached), plus sessions, names, a note,
    a systemic flag that lists m1 and m2."""
    build(client, settings)
    start = datetime.now(UTC) - timedelta(days=2)
    store_events(client, settings, "crm", served("m1", "s-m1", start, {}) + served("m2", "s-m2", start, {}))
    managers.set_manager(client, "crm", "m1", name="Max Mustermann", actor="test")
    managers.set_manager(client, "crm", "m2", name="Maria Other", actor="test")
    notes.add_note(client, "crm", "m1", step="offer", text="trained a new colleague", actor="max", week=TODAY)
    notes.add_note(client, "crm", "m2", step="offer", text="not max's note", actor="test", week=TODAY)
    make_flag(client, "crm", kind="systemic", manager="", managers=("m1", "m2"), team="north")
    return client


def read_zip(data: bytes) -> dict[str, list[dict[str, str]] | str]:
    archive = zipfile.ZipFile(io.BytesIO(data))
    found: dict[str, list[dict[str, str]] | str] = {}
    for name in archive.namelist():
        text = archive.read(name).decode()
        found[name] = text if name.endswith(".txt") else list(csv.DictReader(io.StringIO(text)))
    return found


def test_the_zip_holds_every_kind_of_data_about_the_person_and_no_one_else(built: storage.Client,
                                                                            tmp_path: Path) -> None:
    client = built
    counts = privacy.export(client, "crm", "m2", tmp_path / "m2.zip", actor="cli:test")
    files = read_zip((tmp_path / "m2.zip").read_bytes())
    assert set(files) == FILES
    visits = client.command("SELECT count() FROM visits WHERE manager = 'm2'")
    assert len(files["visits.csv"]) == counts["visits.csv"] == visits > 0
    assert {r["action"] for r in files["sessions.csv"]} == {"start", "end"}  # type: ignore[index]
    for name in ("directory.csv", "teams.csv", "session_steps.csv", "session_days.csv", "step_days.csv",
                 "session_paths.csv", "figures.csv", "flags.csv", "flag_history.csv", "coaching.csv", "audit.csv",
                 "notes.csv"):
        assert files[name], f"{name} is empty"
    assert [r["name"] for r in files["directory.csv"]] == ["Maria Other"]  # type: ignore[index]
    assert {r["kind"] for r in files["flags.csv"]} == {"slow", "systemic"}  # type: ignore[index]
    assert {r["type"] for r in files["coaching.csv"]} >= {"assigned"}  # type: ignore[index]
    assert [r["text"] for r in files["notes.csv"]] == ["not max's note"]  # type: ignore[index]
    everything = "\n".join(str(v) for v in files.values())
    assert "Max Mustermann" not in everything and "trained a new colleague" not in everything
    assert not any(r.get("manager") not in (None, "", "m2") for name, rows in files.items()
                   if isinstance(rows, list) for r in rows), "another manager's row"
    readme = files["README.txt"]
    assert isinstance(readme, str) and "Manager id: m2" in readme
    for name in FILES - {"README.txt"}:
        assert f"{name} (" in readme, f"the README does not say what {name} is"
    assert f"visits.csv ({visits} rows)" in readme and "password" in readme
    # the export is itself audited
    assert client.command("SELECT count() FROM audit_log WHERE action = 'manager.export' AND object = 'crm/m2'") == 1


def test_the_command_writes_the_file_or_says_why_not(built: storage.Client, settings: Settings, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from stepwatch.cli import run

    outputs: list[str] = []

    def on_this_store(argv: list[str], args: Any, _settings: Settings, _out: Any) -> int:
        args.settings = settings
        out = io.StringIO()
        try:
            return int(args.func(args, built, out))
        finally:
            outputs.append(out.getvalue())

    monkeypatch.setattr("stepwatch.cli.run_with_store", on_this_store)
    env = {"STEPWATCH_DATA_DIR": str(settings.data_dir)}
    target = tmp_path / "m1.zip"
    assert run(["managers", "export", "m1", str(target), "--site", "crm"], environ=env) == 0
    assert outputs[-1].startswith(f"{target}: ") and "16 CSV files and README.txt" in outputs[-1]
    assert set(zipfile.ZipFile(target).namelist()) == FILES
    for argv, said in ((["m1", str(tmp_path / "no" / "such" / "dir.zip")], "cannot write"),
                       (["ghost", str(tmp_path / "g.zip")], "holds nothing about a manager 'ghost'"),
                       (["m1", str(tmp_path / "s.zip"), "--site", "nowhere"], "nowhere")):
        site = [] if "--site" in argv else ["--site", "crm"]
        assert run(["managers", "export", *argv, *site], environ=env) == 1
        assert said in capsys.readouterr().err
    assert not (tmp_path / "g.zip").exists() and not (tmp_path / "s.zip").exists()


@pytest.fixture
async def api(aiohttp_client: Any, built: storage.Client, settings: Settings) -> Any:
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                       "analysis_interval_s": 0})))


async def test_a_manager_downloads_their_own_data_and_nobody_elses(api: Any) -> None:
    response = await api.get("/api/v1/me/export")
    assert response.status == 401 and (await response.json())["error"] == "sign in first"
    assert (await login(api, "max")).status == 303  # max is m1
    response = await api.get("/api/v1/me/export?site=crm")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Disposition"] == 'attachment; filename="stepwatch-crm-m1.zip"'
    assert response.headers["Cache-Control"] == "no-store"
    files = read_zip(await response.read())
    assert set(files) == FILES and "Manager id: m1" in files["README.txt"]
    assert [r["text"] for r in files["notes.csv"]] == ["trained a new colleague"]  # type: ignore[index]
    # there is no parameter naming a manager: asking for m2 still gives m1's
    response = await api.get("/api/v1/me/export?manager=m2")
    assert "Manager id: m1" in read_zip(await response.read())["README.txt"]
    response = await api.get("/api/v1/me/export?site=nowhere")
    assert response.status == 404 and "nowhere" in (await response.json())["error"]


@pytest.mark.parametrize("name", ["ada", "dora", "tom"])
async def test_other_accounts_may_not_export_through_the_web(api: Any, name: str) -> None:
    """Directors and trainers read figures for their work, not a bulk copy of a person; an admin
    exports on the host (audited as an operator's act)."""
    assert (await login(api, name)).status == 303
    response = await api.get("/api/v1/me/export")
    assert response.status == 403
    assert "stepwatch managers export ID --site SITE FILE" in (await response.json())["error"]


async def test_my_figures_link_to_the_export(api: Any) -> None:
    assert (await login(api, "max")).status == 303
    for language, words in (("en", "Download everything stepwatch stores about you"),
                            ("ru", "Скачать всё, что stepwatch хранит о вас")):
        await api.post("/api/v1/account/language", json={"language": language},
                       headers={"X-CSRF-Token": await page_csrf(api, "/me?site=crm")})
        html = await (await api.get("/me?site=crm")).text()
        how = html.split('id="how-heading"')[1].split("</section>")[0]  # beside what is measured and who sees it
        assert '<a href="/api/v1/me/export?site=crm" download>' + words + "</a>" in how, language
