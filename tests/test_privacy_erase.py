"""Erasure: `stepwatch managers erase` removes one person from every table that holds them (found from
ClickHouse's own system.columns), from the collector's spool and from the audit log's details, keeps
that an erasure happened without the id, and leaves everyone else's figures as they were."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from coaching import outbox
from collector.spool import Spool
from kernel import audit, managers, notes, storage, users
from kernel.settings import Settings
from stepwatch import privacy
from tests.dashboard_data import make_flag, served, store_events
from tests.figures_helpers import TODAY, build
from tests.web_helpers import PASSWORD

GONE = "m2"  # flagged slow on offer, coached by tom (tests/figures_helpers.build)


def holdings(client: storage.Client, manager: str) -> dict[str, int]:
    """Rows naming `manager` in every stored table with a manager / managers / manager_id column (as
    read, FINAL: a mutation may merge an older refresh's rows away, which changes no figure)."""
    found = {}
    columns = client.query("""
        SELECT c.table, c.name, c.type, t.engine FROM system.columns AS c
        INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table
        WHERE c.database = currentDatabase() AND c.name IN ('manager', 'managers', 'manager_id')
          AND t.engine LIKE '%MergeTree' ORDER BY c.table""").result_rows
    for table, column, kind, engine in columns:
        test = f"has({column}, {{m:String}})" if kind.startswith("Array") else f"{column} = {{m:String}}"
        final = "FINAL" if engine != "MergeTree" else ""
        found[f"{table}.{column}"] = int(client.command(f"SELECT count() FROM {table} {final} WHERE {test}",
                                                        parameters={"m": manager}))
    return found


def figures(client: storage.Client) -> dict[str, Any]:
    """What the others' pages read: stats rows, session and visit counts, step times, per manager."""
    return {
        "stats": client.query("SELECT manager, step, row FROM pair_stats FINAL WHERE manager != {m:String} "
                              "ORDER BY manager, step", parameters={"m": GONE}).result_rows,
        "visits": client.query("SELECT manager, count(), sum(active_ms) FROM visits WHERE manager != {m:String} "
                               "GROUP BY manager ORDER BY manager", parameters={"m": GONE}).result_rows,
        "sessions": client.query("SELECT manager, count() FROM session_days WHERE manager != {m:String} "
                                 "GROUP BY manager ORDER BY manager", parameters={"m": GONE}).result_rows,
        "steps": client.query("SELECT manager, step, count(), sum(visible_ms) FROM session_steps FINAL "
                              "WHERE manager != {m:String} GROUP BY manager, step ORDER BY manager, step",
                              parameters={"m": GONE}).result_rows,
        "pair_days": client.query("SELECT manager, step, sum(length(visible_ms)) FROM pair_days "
                                  "WHERE manager != {m:String} GROUP BY manager, step ORDER BY manager, step",
                                  parameters={"m": GONE}).result_rows,
        "flags": client.query("SELECT flag_id, manager, status FROM flags FINAL WHERE manager != {m:String} "
                              "ORDER BY flag_id", parameters={"m": GONE}).result_rows,
        "accounts": client.query("SELECT name FROM users FINAL ORDER BY name").result_rows,
    }


def spooled(client: storage.Client, settings: Settings) -> Path:
    """A spool file a crashed collector left: one visit of m1 and one of the erased, in compact rows."""
    spool = Spool(settings.spool_path, 10**9)
    rows = []
    for manager in ("m1", GONE):
        row = {"site": "crm", "visit_id": "00000000-0000-4000-8000-00000000000" + manager[-1], "seq": 0, "final": True,
               "manager": manager, "session_id": f"s-{manager}", "customer": "", "process": "sales", "step": "offer",
               "path": "/offer", "started_at": 1.7e9, "active_ms": 1000, "idle_ms": 0, "hidden_ms": 0,
               "tracker": "test", "source": "tracker"}
        rows.append(orjson.dumps([row[c] for c in storage.VISIT_COLUMNS]))
    spool.append(b"\n".join(rows), 2, b"", 0, compact=True)
    spool.close()
    (path,) = spool.files()
    return path


@pytest.fixture
def built(client: storage.Client, settings: Settings, site: Any) -> storage.Client:
    build(client, settings)
    start = datetime.now(UTC) - timedelta(days=2)
    store_events(client, settings, "crm", served("m1", "s-m1", start, {}) + served(GONE, "s-m2", start, {}))
    users.add_user(client, "mo", "manager", PASSWORD, teams=("north",), manager_id=GONE, actor="test")
    managers.set_manager(client, "crm", GONE, name="Maria Gone", email="maria@example.com", actor="test")
    managers.set_manager(client, "crm", "m1", name="Max Stays", actor="test")
    notes.add_note(client, "crm", GONE, step="offer", text="CRM outage", actor="mo", week=TODAY)
    make_flag(client, "crm", kind="systemic", manager="", managers=("m1", GONE), team="north")
    audit.record(client, "ada", "team.review", "crm/north", "", {"managers": ["m1", GONE], "who": "Maria Gone"})
    digest = json.dumps({"text": f"North lost 5 h: Maria Gone ({GONE}) 3 h, Max Stays (m1) 2 h; m22 none"})
    client.insert("outbox", [[uuid.uuid4(), "crm", "digest.director", "email", "dora@example.com",
                              "digest:director:crm:dora:2026-W49", digest, datetime.now(UTC), 0, None, "", None, 1]],
                  column_names=list(outbox.COLUMNS))
    return client


def test_every_table_with_a_manager_column_is_emptied_of_the_person(built: storage.Client,
                                                                    settings: Settings) -> None:
    client = built
    spool_file = spooled(client, settings)
    before = holdings(client, GONE)
    # the test sees every kind of place the person is held, so a clean result below means something
    for place in ("step_visits.manager", "session_events.manager", "session_steps.manager", "session_days.manager",
                  "pair_days.manager", "pair_stats.manager", "flags.manager", "flags.managers", "managers.manager",
                  "team_members.manager", "users.manager_id", "notes.manager"):
        assert before[place] > 0, place
    assert set(privacy.tables_with_manager(client)) >= {p.split(".")[0] for p in before if p.endswith(".manager")}
    others = figures(client)
    m1_before = holdings(client, "m1")

    result = privacy.erase(client, "crm", GONE, actor="cli:test", reason=f"left; asked for it ({GONE})",
                           spool_dir=settings.spool_path)

    assert holdings(client, GONE) == dict.fromkeys(before, 0)
    assert figures(client) == {**others, "accounts": [r for r in others["accounts"] if r != ("mo",)]}
    assert holdings(client, "m1") == m1_before
    # the flag history, the coaching and the audit name the person by other ids: all gone
    text = "\n".join(str(r) for t in ("flag_events", "coaching_events", "coaching_evaluations", "outbox", "audit_log",
                                      "notes", "users", "managers")
                     for r in client.query(f"SELECT * FROM {t}").result_rows)
    assert GONE not in re.findall(r"\bm\d\b", text) and "Maria Gone" not in text and "CRM outage" not in text
    assert client.command("SELECT count() FROM coaching_events") == 0  # tom's only assignment was m2's
    # the systemic flag stays, about the team, without the person
    assert client.query("SELECT managers FROM flags FINAL WHERE kind = 'systemic'").result_rows == [(["m1"],)]
    # the audit: an erasure happened, with a keyed hash and counts, neither id nor name
    entry = audit.entries(client, action="manager.erase")[0]
    assert entry.object == f"crm/{result.subject}" and GONE not in entry.object
    assert entry.reason == "left; asked for it ((erased))"
    assert entry.details["rows"]["step_visits"] > 0 and entry.details["spool_rows"] == 1
    assert result.subject == privacy.subject_hash(client, "crm", GONE) != privacy.subject_hash(client, "crm", "m1")
    kept = audit.entries(client, action="team.review")[0]
    assert kept.details == {"managers": ["m1", "(erased)"], "who": "(erased)"}
    # the director's digest still goes out, without the person
    assert json.loads(client.command("SELECT body FROM outbox FINAL WHERE topic = 'digest.director'")) == {
        "text": "North lost 5 h: (erased) ((erased)) 3 h, Max Stays (m1) 2 h; m22 none"}
    # the spool keeps m1's visit, without the erased one's
    (record,) = list(Spool.read(spool_file))
    assert record.rows == 1 and b'"m1"' in record.block and GONE.encode() not in record.block


def test_the_command_asks_first_and_says_what_it_removed(built: storage.Client, settings: Settings,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import io

    def cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        out = io.StringIO()
        from stepwatch.cli import run

        monkeypatch.setattr("stepwatch.cli.run_with_store",
                            lambda a, args, s, o: _run_on(built, args, settings, out))
        code = run(list(argv), environ={"STEPWATCH_DATA_DIR": str(settings.data_dir)})
        return code, out.getvalue(), capsys.readouterr().err

    code, _, err = cli("managers", "erase", GONE, "--site", "crm", "--reason", "left", stdin="no\n")
    assert code == 1 and "not confirmed: nothing erased" in err and "Type the id to confirm" in err
    assert holdings(built, GONE)["step_visits.manager"] > 0
    code, _, err = cli("managers", "erase", "nobody", "--site", "crm", "--reason", "left", "--yes")
    assert code == 1 and "holds nothing about a manager 'nobody'" in err
    code, _, err = cli("managers", "erase", GONE, "--site", "nowhere", "--reason", "left", "--yes")
    assert code == 1 and "nowhere" in err
    code, _, err = cli("managers", "erase", GONE, "--site", "crm", "--reason", " ", "--yes")
    assert code == 1 and "--reason" in err
    code, out, err = cli("managers", "erase", GONE, "--site", "crm", "--reason", "left", stdin=f"{GONE}\n")
    assert code == 0, err
    assert out.startswith(f"erased manager {GONE} of site crm: ") and "step_visits" in out
    assert sum(holdings(built, GONE).values()) == 0


def _run_on(client: storage.Client, args: Any, settings: Settings, out: Any) -> int:
    args.settings = settings
    return int(args.func(args, client, out))
