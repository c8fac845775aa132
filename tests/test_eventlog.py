"""Importing and exporting event logs (stepwatch/eventlog, `stepwatch import`, `stepwatch export`)
against the real engine, on small logs in tests/fixtures/eventlog whose every row is known."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from kernel import migrations, processes, sites, storage
from kernel.errors import InvalidInput
from kernel.settings import Settings
from stepwatch import eventlog
from tests.helpers import run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "eventlog"
NS = "{http://www.xes-standard.org}"


@pytest.fixture
def history(settings: Settings, client: storage.Client, site: sites.Site) -> Settings:
    """Settings whose retention reaches back to the fixtures' 2024 dates, applied to the tables."""
    migrations.apply_retention(client, 10_000)
    return settings.model_copy(update={"retention_days": 10_000})


def figures(client: storage.Client) -> tuple[int, ...]:
    """(visits, their total active ms, sessions, sessions ended, their total length), as readers see them."""
    visits, active, sessions = client.query(
        "SELECT count(), sum(active_ms), uniqExact(session_id) FROM visits WHERE site = 'crm'").result_rows[0]
    ended, length = client.query("SELECT countIf(ended), sum(dateDiff('ms', started_at, ended_at)) "
                                 "FROM service_sessions WHERE site = 'crm'").result_rows[0]
    return int(visits), int(active), int(sessions), int(ended), int(length)


def import_csv(client: storage.Client, settings: Settings, path: Path, **options: object) -> eventlog.ImportSummary:
    mapping = eventlog.read_mapping_file(FIXTURES / "work_items.toml")
    return eventlog.import_log(client, settings, path, eventlog.ImportOptions(site="crm", mapping=mapping, **options))


def test_start_and_end_columns_become_visits_and_bad_rows_are_reported_by_line(
        client: storage.Client, history: Settings) -> None:
    summary = import_csv(client, history, FIXTURES / "work_items.csv")
    assert (summary.events, summary.visits, summary.sessions, summary.bad_rows) == (10, 6, 4, 4)
    assert [(n, reason.split(":")[0]) for n, reason in summary.first_bad] == [
        (7, "empty resource"),
        (8, "start is not a timestamp (ISO 8601)"),
        (9, "complete before start"),
        (10, "longer than STEPWATCH_MAX_DURATION_MS (12 h)"),
    ]
    rows = storage.query_rows(client, "SELECT manager, step, session_id, customer, started_at, active_ms, idle_ms, "
                                      "source FROM visits WHERE site = 'crm' ORDER BY started_at, manager")
    first = rows[0]
    assert (first["manager"], first["step"], first["customer"], first["active_ms"], first["idle_ms"]) == (
        "anna", "Check_documents", eventlog.customer_ref(sites.get_site(client, "crm"), "T-1"), 300_000, 0)
    assert first["started_at"].isoformat().startswith("2024-03-04T08:00:00")  # +01:00 read as such
    assert first["source"] == "import:work_items.csv"
    assert first["session_id"] == eventlog.session_id_of("crm", "T-1", "anna")
    assert any(r["active_ms"] == 0 for r in rows)  # a zero-length work item is kept
    anna = [r for r in rows if r["session_id"] == first["session_id"] and r["step"] == "Check_documents"]
    assert sum(r["active_ms"] for r in anna) == 450_000  # two visits of one step in one session

    process = processes.latest(client, "crm")
    assert process is not None and process.key == "imported"
    assert [(s.key, s.title) for s in process.steps] == [("Check_documents", "Check documents"),
                                                         ("Call_client", "Call client")]
    sessions = storage.query_rows(client, "SELECT manager, started_at, ended_at, ended FROM service_sessions "
                                          "WHERE site = 'crm' AND manager = 'anna' ORDER BY started_at")
    assert sessions[0]["ended"]
    assert sessions[0]["ended_at"] - sessions[0]["started_at"] == timedelta(minutes=62, seconds=30)


def test_importing_the_same_file_again_changes_nothing(client: storage.Client, history: Settings) -> None:
    import_csv(client, history, FIXTURES / "work_items.csv")
    before, version = figures(client), processes.latest(client, "crm").version  # type: ignore[union-attr]
    again = import_csv(client, history, FIXTURES / "work_items.csv", block_rows=2)  # other block boundaries too
    assert again.visits == 6 and again.steps_added == []
    assert figures(client) == before
    assert processes.latest(client, "crm").version == version  # type: ignore[union-attr]


def test_gzip_is_read_like_plain_text(client: storage.Client, history: Settings, tmp_path: Path) -> None:
    packed = tmp_path / "work_items.csv.gz"
    with gzip.open(packed, "wb") as f:
        f.write((FIXTURES / "work_items.csv").read_bytes())
    summary = import_csv(client, history, packed)
    assert (summary.visits, summary.bad_rows) == (6, 4)


def test_strict_refuses_steps_the_process_does_not_have(client: storage.Client, history: Settings) -> None:
    processes.load(client, processes.from_definition(
        {"process": "service", "steps": [{"key": "Call_client"}]}, "crm"), actor="test")
    summary = import_csv(client, history, FIXTURES / "work_items.csv", strict=True)
    assert summary.visits == 3 and summary.steps_added == []
    assert summary.bad_by_reason["unknown step (--strict)"] == 3
    assert processes.latest(client, "crm").version == 1  # type: ignore[union-attr]
    assert client.command("SELECT DISTINCT process FROM visits WHERE site = 'crm'") == "service"


def test_single_timestamps_take_the_time_since_the_resources_previous_event(
        client: storage.Client, history: Settings) -> None:
    summary = eventlog.import_log(client, history, FIXTURES / "audit_trail.csv", eventlog.ImportOptions(site="crm"))
    assert summary.timing == "gaps"
    assert summary.ignored == {"first event of a resource in a case": 2, "gap over the cap": 1}
    rows = storage.query_rows(client, "SELECT manager, step, active_ms FROM visits WHERE site = 'crm' "
                                      "ORDER BY started_at")
    assert [(r["manager"], r["step"], r["active_ms"]) for r in rows] == [
        ("kim", "check", 240_000), ("kim", "close", 360_000), ("lee", "close", 900_000)]


def test_xes_pairs_start_and_complete_and_reports_events_by_number(
        client: storage.Client, history: Settings) -> None:
    summary = eventlog.import_log(client, history, FIXTURES / "work_items.xes", eventlog.ImportOptions(site="crm"))
    assert (summary.timing, summary.unit, summary.events, summary.visits) == ("pairs", "event", 8, 2)
    assert summary.first_bad == [
        (3, "complete without a start of the same case, activity and resource"),
        (4, "no org:resource (the person who did the work)"),
        (6, "start without complete: the case ended with the work item open"),
    ]
    assert summary.ignored == {"lifecycle schedule": 1}
    rows = storage.query_rows(client, "SELECT manager, step, customer, active_ms FROM visits ORDER BY started_at")
    crm = sites.get_site(client, "crm")
    assert [(r["manager"], r["step"], r["customer"], r["active_ms"]) for r in rows] == [
        ("112", "W_Valideren_aanvraag", eventlog.customer_ref(crm, "case-1"), 450_500),
        ("112", "W_Nabellen_offertes", eventlog.customer_ref(crm, "case-2"), 120_000)]


def test_history_older_than_the_retention_is_refused_with_the_remedy(
        client: storage.Client, settings: Settings, site: sites.Site) -> None:
    summary = import_csv(client, settings, FIXTURES / "work_items.csv")  # retention: 400 days
    assert summary.visits == 0
    assert "raise it (up to 25000)" in summary.first_bad[0][1]
    assert summary.bad_by_reason["older than the retention"] == 6


def test_mapping_errors_name_the_columns(client: storage.Client, history: Settings) -> None:
    with pytest.raises(InvalidInput, match="no column 'Nope'.*Ticket, Task"):
        eventlog.import_log(client, history, FIXTURES / "work_items.csv",
                            eventlog.ImportOptions(site="crm", mapping=eventlog.CsvMapping(case="Nope")))
    with pytest.raises(InvalidInput, match="which column holds the case"):
        eventlog.import_log(client, history, FIXTURES / "work_items.csv", eventlog.ImportOptions(site="crm"))


def test_fast_ids_are_uuid5() -> None:
    from stepwatch.eventlog._import import uuid5

    for name in ("crm|T-1|Call client|anna|1709539560000", "é|ü", ""):
        assert uuid5(name) == str(uuid.uuid5(eventlog.NAMESPACE, name))


def read_xes_back(path: Path) -> list[dict[str, object]]:
    """An XES reader of its own (ElementTree): one dict per event, with its trace's name."""
    events = []
    for trace in ET.parse(path).getroot().iter(NS + "trace"):
        name = next(c.get("value") for c in trace if c.tag == NS + "string" and c.get("key") == "concept:name")
        for event in trace.iter(NS + "event"):
            values: dict[str, object] = {"trace": name}
            for child in event:
                value = child.get("value")
                values[str(child.get("key"))] = int(str(value)) if child.tag == NS + "int" else value
            events.append(values)
    return events


@pytest.mark.slow
def test_cli_import_then_export_xes_and_csv(tmp_path: Path) -> None:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path / "data"), "STEPWATCH_RETENTION_DAYS": "10000"}
    assert run_cli("sites", "add", "crm", "--origin", "https://crm.example.com", env=env)[0] == 0
    code, out, err = run_cli("import", str(FIXTURES / "work_items.csv"), "--site", "crm",
                             "--mapping", str(FIXTURES / "work_items.toml"), "--activity", "Task", env=env)
    assert code == 0, err
    assert "visits imported: 6" in out and "bad rows:        4" in out
    assert "work_items.csv: line 8: start is not a timestamp (ISO 8601): 'yesterday'" in err

    assert run_cli("export", str(tmp_path / "out.xes"), "--site", "crm", "--format", "xes", env=env)[0] == 0
    events = read_xes_back(tmp_path / "out.xes")
    assert len(events) == 12
    assert [e["lifecycle:transition"] for e in events[:2]] == ["start", "complete"]
    starts = {(e["trace"], e["concept:name"], e["org:resource"], e["time:timestamp"]) for e in events
              if e["lifecycle:transition"] == "start"}
    assert (eventlog.session_id_of("crm", "T-1", "anna"), "Check documents", "anna",
            "2024-03-04T08:00:00.000+00:00") in starts
    for start, complete in zip(events[::2], events[1::2], strict=True):
        began = datetime.fromisoformat(str(start["time:timestamp"]))
        ended = datetime.fromisoformat(str(complete["time:timestamp"]))
        assert (ended - began) // timedelta(milliseconds=1) == complete["active_ms"]
        assert complete["source"] == "import:work_items.csv"

    code, _, err = run_cli("export", str(tmp_path / "out.csv.gz"), "--site", "crm", "--format", "csv",
                           "--since", "2024-03-05", "--until", "2024-03-05", env=env)
    assert code == 0, err
    with gzip.open(tmp_path / "out.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f))
    assert {(r["activity"], r["resource"]) for r in rows} == {("Check documents", "bob"), ("Call client", "anna")}
    assert all(len(r["case"]) == 32 and r["case"] not in ("T-2", "T-3") for r in rows)  # pseudonyms
    assert list(rows[0]) == list(eventlog.CSV_COLUMNS)

    # The CSV export reads back with the usual column names, into another site, with the same times.
    shutil.copy(tmp_path / "out.csv.gz", tmp_path / "again.csv.gz")
    assert run_cli("sites", "add", "copy", "--origin", "https://crm.example.com", env=env)[0] == 0
    code, out, err = run_cli("import", str(tmp_path / "again.csv.gz"), "--site", "copy", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["visits"] == 2


@pytest.mark.slow
def test_cli_import_exits_1_when_nothing_could_be_imported(tmp_path: Path) -> None:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path / "data")}  # retention 400 days: the 2024 rows are too old
    assert run_cli("sites", "add", "crm", "--origin", "https://crm.example.com", env=env)[0] == 0
    code, out, err = run_cli("import", str(FIXTURES / "work_items.xes"), "--site", "crm", env=env)
    assert code == 1
    assert "older than the retention" in err and "STEPWATCH_RETENTION_DAYS" in err
