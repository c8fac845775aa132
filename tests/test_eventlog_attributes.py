"""Session attributes through event logs: imported from CSV columns and XES trace attributes
(refused by row when outside the declared values), exported as CSV columns, XES trace attributes
and OCEL 2.0 objects; OCEL read back with a parser written here, independent of the exporter."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kernel import migrations, processes, sites, storage
from kernel.errors import InvalidInput
from kernel.settings import Settings
from stepwatch import eventlog
from tests.helpers import run_cli

PROCESS = """
process = "desk"
[attributes]
segment = ["vip", "regular"]
channel = ["phone", "email", "chat"]
[[steps]]
key = "Check"
title = "Check documents"
[[steps]]
key = "Call"
title = "Call client"
"""

CSV_LOG = """Case,Task,Who,Begin,Finish,Segment,How
T-1,Check,anna,2024-03-04T08:00:00+00:00,2024-03-04T08:05:00+00:00,VIP,phone
T-1,Call,anna,2024-03-04T08:10:00+00:00,2024-03-04T08:20:00+00:00,VIP,phone
T-2,Check,bob,2024-03-04T09:00:00+00:00,2024-03-04T09:04:00+00:00,regular,
T-3,Check,bob,2024-03-04T10:00:00+00:00,2024-03-04T10:04:00+00:00,gold,chat
T-4,Call,anna,2024-03-04T11:00:00+00:00,2024-03-04T11:03:00+00:00,,
"""

XES_LOG = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1.0" xmlns="http://www.xes-standard.org">
  <trace>
    <string key="concept:name" value="T-7"/>
    <string key="segment" value="vip"/>
    <string key="channel" value="email"/>
    <string key="region" value="north"/>
    <event><string key="concept:name" value="Check"/><string key="org:resource" value="anna"/>
      <string key="lifecycle:transition" value="start"/>
      <date key="time:timestamp" value="2024-03-05T08:00:00Z"/></event>
    <event><string key="concept:name" value="Check"/><string key="org:resource" value="anna"/>
      <string key="lifecycle:transition" value="complete"/>
      <date key="time:timestamp" value="2024-03-05T08:06:00Z"/></event>
  </trace>
  <trace>
    <string key="concept:name" value="T-8"/>
    <string key="channel" value="fax"/>
    <event><string key="concept:name" value="Call"/><string key="org:resource" value="bob"/>
      <string key="lifecycle:transition" value="start"/>
      <date key="time:timestamp" value="2024-03-05T09:00:00Z"/></event>
    <event><string key="concept:name" value="Call"/><string key="org:resource" value="bob"/>
      <string key="lifecycle:transition" value="complete"/>
      <date key="time:timestamp" value="2024-03-05T09:02:00Z"/></event>
  </trace>
</log>
"""


@pytest.fixture
def desk(settings: Settings, client: storage.Client, site: sites.Site) -> Settings:
    """Site `crm` with the desk process (declaring segment and channel); retention back to 2024."""
    migrations.apply_retention(client, 10_000)
    processes.load(client, processes.parse(PROCESS, "crm"), actor="test")
    return settings.model_copy(update={"retention_days": 10_000})


def mapping(**attributes: str) -> eventlog.CsvMapping:
    return eventlog.CsvMapping(case="Case", activity="Task", resource="Who", start="Begin", end="Finish",
                               attributes=tuple(attributes.items()))


def session_attributes(client: storage.Client, site: str = "crm") -> dict[tuple[str, str], dict[str, str]]:
    """(manager, first step started) -> the session's attributes."""
    rows = storage.query_rows(client, "SELECT s.manager AS manager, s.attributes AS attributes, "
                                      "min(v.started_at) AS first FROM service_sessions AS s "
                                      "JOIN visits AS v USING (site, session_id) WHERE s.site = {site:String} "
                                      "GROUP BY s.manager, s.attributes, s.session_id", {"site": site})
    return {(r["manager"], r["first"].strftime("%d %H:%M")): r["attributes"] for r in rows}


def import_text(client: storage.Client, settings: Settings, tmp_path: Path, name: str, text: str,
                **options: Any) -> eventlog.ImportSummary:
    path = tmp_path / name
    path.write_text(text)
    return eventlog.import_log(client, settings, path, eventlog.ImportOptions(site="crm", **options))


def test_csv_columns_become_session_attributes_and_undeclared_values_are_refused_by_line(
        client: storage.Client, desk: Settings, tmp_path: Path) -> None:
    summary = import_text(client, desk, tmp_path, "log.csv", CSV_LOG,
                          mapping=mapping(segment="Segment", channel="How"))
    assert (summary.visits, summary.bad_rows) == (4, 1)
    assert summary.first_bad == [(5, "attributes.segment: the value is not one of vip, regular")]
    assert session_attributes(client) == {
        ("anna", "04 08:00"): {"segment": "vip", "channel": "phone"},  # VIP read as the key vip
        ("bob", "04 09:00"): {"segment": "regular"},  # an empty cell: the attribute is not given
        ("anna", "04 11:00"): {},
    }


def test_an_attribute_the_process_does_not_declare_is_refused_before_reading(
        client: storage.Client, desk: Settings, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="attribute 'region' is not declared by the process of site crm"):
        import_text(client, desk, tmp_path, "log.csv", CSV_LOG, mapping=mapping(region="How"))
    with pytest.raises(InvalidInput, match="no column 'Tier' \\(for the attribute segment\\)"):
        import_text(client, desk, tmp_path, "log.csv", CSV_LOG, mapping=mapping(segment="Tier"))


def test_xes_trace_attributes_become_session_attributes(client: storage.Client, desk: Settings,
                                                        tmp_path: Path) -> None:
    summary = import_text(client, desk, tmp_path, "log.xes", XES_LOG)
    assert (summary.visits, summary.bad_rows) == (1, 1)
    assert summary.first_bad == [(3, "attributes.channel: the value is not one of phone, email, chat")]
    # region is no declared attribute: not read at all
    assert session_attributes(client) == {("anna", "05 08:00"): {"segment": "vip", "channel": "email"}}


def test_csv_and_xes_exports_carry_the_attributes_and_read_back(client: storage.Client, desk: Settings,
                                                                 tmp_path: Path) -> None:
    import_text(client, desk, tmp_path, "log.csv", CSV_LOG, mapping=mapping(segment="Segment", channel="How"))
    out = io.StringIO()
    assert eventlog.export_csv(client, "crm", out) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0])[-2:] == ["case:channel", "case:segment"]
    assert sorted((r["case:segment"], r["case:channel"]) for r in rows) == [
        ("", ""), ("regular", ""), ("vip", "phone"), ("vip", "phone")]

    # Read back into a site declaring the same attributes: the columns are found by their names.
    sites.add_site(client, "copy", ["https://crm.example.com"], actor="test")
    processes.load(client, processes.parse(PROCESS, "copy"), actor="test")
    (tmp_path / "again.csv").write_text(out.getvalue())
    summary = eventlog.import_log(client, desk, tmp_path / "again.csv", eventlog.ImportOptions(site="copy"))
    assert (summary.visits, summary.bad_rows) == (4, 0)
    assert sorted(map(sorted, (a.items() for a in session_attributes(client, "copy").values()))) == \
        sorted(map(sorted, (a.items() for a in session_attributes(client).values())))

    xes = io.StringIO()
    eventlog.export_xes(client, "crm", xes)
    assert xes.getvalue().count('<string key="segment" value="vip"/>') == 1  # once, on its trace
    assert xes.getvalue().count('<string key="channel" value="phone"/>') == 1
    assert xes.getvalue().count('<string key="segment" value="regular"/>') == 1


# -- OCEL 2.0, read back by a parser that knows only the standard ---------------------------------


def parse_ocel(text: str) -> dict[str, Any]:
    """The OCEL 2.0 JSON checks a reader makes: every type declared, every relationship resolvable,
    every attribute of its declared type; returns the parts by name."""
    log = json.loads(text)
    assert set(log) == {"objectTypes", "eventTypes", "objects", "events"}
    kinds = {"string": str, "integer": int, "float": float, "boolean": bool, "time": str}

    def declared(types: list[dict[str, Any]]) -> dict[str, dict[str, type]]:
        names = [t["name"] for t in types]
        assert len(names) == len(set(names)), "a type declared twice"
        return {t["name"]: {a["name"]: kinds[a["type"]] for a in t["attributes"]} for t in types}

    object_types, event_types = declared(log["objectTypes"]), declared(log["eventTypes"])
    objects = {}
    for obj in log["objects"]:
        assert obj["id"] not in objects, "an object id twice"
        assert obj["type"] in object_types
        for attribute in obj["attributes"]:
            assert isinstance(attribute["value"], object_types[obj["type"]][attribute["name"]])
            datetime.fromisoformat(attribute["time"])
        objects[obj["id"]] = obj
    for obj in log["objects"]:
        assert all(r["objectId"] in objects and r["qualifier"] for r in obj["relationships"])
    ids = set()
    for event in log["events"]:
        assert event["id"] not in ids, "an event id twice"
        ids.add(event["id"])
        assert event["type"] in event_types
        assert datetime.fromisoformat(event["time"]).utcoffset() is not None
        for attribute in event["attributes"]:
            assert isinstance(attribute["value"], event_types[event["type"]][attribute["name"]])
        assert event["relationships"] and all(r["objectId"] in objects and r["qualifier"]
                                              for r in event["relationships"])
    return {"objects": objects, "events": log["events"]}


def test_ocel_export_has_managers_customers_and_sessions_as_objects(client: storage.Client, desk: Settings,
                                                                    tmp_path: Path) -> None:
    import_text(client, desk, tmp_path, "log.csv", CSV_LOG, mapping=mapping(segment="Segment", channel="How"))
    out = io.StringIO()
    assert eventlog.export_ocel(client, "crm", out) == 4
    log = parse_ocel(out.getvalue())
    objects, events = log["objects"], log["events"]
    assert Counter(o["type"] for o in objects.values()) == {"manager": 2, "customer": 3, "service session": 3}
    assert Counter(e["type"] for e in events) == {"Check documents": 2, "Call client": 2, "session start": 3,
                                                  "session end": 3}
    visits = [e for e in events if e["type"] in ("Check documents", "Call client")]
    first = min(visits, key=lambda e: e["time"])
    assert {a["name"]: a["value"] for a in first["attributes"]} == {"active_ms": 300_000, "idle_ms": 0,
                                                                     "hidden_ms": 0}
    linked = {objects[r["objectId"]]["type"]: r["objectId"] for r in first["relationships"]}
    assert linked["manager"] == "manager:anna"
    session = objects[linked["service session"]]
    assert {a["name"]: a["value"] for a in session["attributes"]} == {"segment": "vip", "channel": "phone"}
    assert {r["objectId"] for r in session["relationships"]} == {"manager:anna", linked["customer"]}
    # every visit of a session relates to the same customer and manager as the session object
    for event in visits:
        targets = {objects[r["objectId"]]["type"]: r["objectId"] for r in event["relationships"]}
        owner = objects[targets["service session"]]
        assert {r["objectId"] for r in owner["relationships"]} == {targets["manager"], targets["customer"]}
    stored = client.query("SELECT count() FROM visits WHERE site = 'crm'").result_rows[0][0]
    assert len(visits) == stored


def test_ocel_is_read_by_pm4py_when_it_is_installed(client: storage.Client, desk: Settings, tmp_path: Path) -> None:
    pm4py = pytest.importorskip("pm4py")
    import_text(client, desk, tmp_path, "log.csv", CSV_LOG, mapping=mapping(segment="Segment", channel="How"))
    with open(tmp_path / "log.jsonocel", "w") as f:
        eventlog.export_ocel(client, "crm", f)
    ocel = pm4py.read_ocel2_json(str(tmp_path / "log.jsonocel"))
    assert len(ocel.events) == 10 and len(ocel.objects) == 8


@pytest.mark.slow
def test_cli_attribute_option_and_ocel_export(tmp_path: Path) -> None:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path / "data"), "STEPWATCH_RETENTION_DAYS": "10000"}
    assert run_cli("sites", "add", "crm", "--origin", "https://crm.example.com", env=env)[0] == 0
    (tmp_path / "desk.toml").write_text(PROCESS)
    assert run_cli("process", "load", str(tmp_path / "desk.toml"), "--site", "crm", env=env)[0] == 0
    (tmp_path / "log.csv").write_text(CSV_LOG)
    code, out, err = run_cli("import", str(tmp_path / "log.csv"), "--site", "crm", "--case", "Case", "--activity",
                             "Task", "--resource", "Who", "--start", "Begin", "--end", "Finish",
                             "--attribute", "segment=Segment", "--attribute", "channel=How", env=env)
    assert code == 0, err
    assert "visits imported: 4" in out
    assert "log.csv: line 5: attributes.segment: the value is not one of vip, regular" in err
    code, _, err = run_cli("import", str(tmp_path / "log.csv"), "--site", "crm", "--attribute", "segment", env=env)
    assert code != 0 and "--attribute takes NAME=COLUMN" in err
    code, out, err = run_cli("export", str(tmp_path / "out.jsonocel"), "--site", "crm", "--format", "ocel", env=env)
    assert code == 0, err
    assert "exported 4 visits" in out
    parse_ocel((tmp_path / "out.jsonocel").read_text())
