"""The coaching commands end to end, as an operator runs them: catalog, assign, schedule, done,
show, list, cancel, evaluate (refused too early), effectiveness and the webhook outbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.coaching_helpers import EXAMPLE
from tests.helpers import run_cli


@pytest.mark.slow
def test_coaching_round_trip(tmp_path: Path) -> None:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path / "data"), "STEPWATCH_WEBHOOK_URL": "http://127.0.0.1:9/hook"}

    def ok(*argv: str) -> str:
        code, out, err = run_cli(*argv, env=env)
        assert code == 0, (argv, err)
        return out

    def refused(*argv: str) -> str:
        code, out, err = run_cli(*argv, env=env)
        assert code == 1, (argv, out)
        return err

    ok("sites", "add", "crm", "--origin", "https://crm.example.com")
    ok("process", "load", str(EXAMPLE), "--site", "crm")
    ok("teams", "add", "north", "--site", "crm")
    ok("teams", "assign", "north", "m-1", "m-2", "--site", "crm")
    ok("users", "add", "dana", "--role", "director", "--team", "north")
    ok("users", "add", "tom", "--role", "trainer")
    ok("users", "add", "sam", "--role", "director", "--team", "south")

    out = ok("courses", "add", "crm", "--title", "Offer basics", "--step", "offer", "--minutes", "45", "--json")
    assert json.loads(out)["course_id"] == "offer-basics"
    assert "addresses" not in refused("courses", "add", "crm", "--title", "X", "--step", "nowhere")
    assert "offer-basics" in ok("courses", "list", "crm")
    assert "not a trainer" in refused("mentors", "set", "crm", "dana", "--step", "offer")
    ok("mentors", "set", "crm", "tom", "--step", "offer", "--step", "needs", "--reason", "our best closer")
    assert json.loads(ok("mentors", "list", "crm", "--json"))[0]["steps"] == ["offer", "needs"]

    due = (datetime.now(UTC).date() + timedelta(days=5)).isoformat()
    err = refused("coaching", "assign", "crm", "m-1", "offer", "--mentor", "tom", "--due", due, "--target", "4m",
                  "--within", "30", "--as", "sam")
    assert "no manager m-1 in a team sam leads" in err and "north" not in err
    meeting = json.loads(ok("coaching", "assign", "crm", "m-1", "offer", "--mentor", "tom", "--due", due, "--target",
                            "4m", "--within", "30", "--note", "objections", "--as", "dana", "--json"))
    assert (meeting["state"], meeting["assigned_by"], meeting["target"]["max_ms"]) == ("assigned", "dana", 240_000)
    ident = meeting["assignment_id"]
    course = ok("coaching", "assign", "crm", "m-2", "offer", "--course", "offer-basics", "--due", due, "--target",
                "3m30s", "--within", "30")
    assert "course offer-basics for m-2 on offer" in course

    assert "the trainer tom schedules" in refused("coaching", "schedule", ident[:8], "--at", "2099-01-01 10:00",
                                                   "--as", "dana")
    assert "in the past" in refused("coaching", "schedule", ident, "--at", "2020-01-01 10:00", "--as", "tom")
    when = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d 10:00")
    assert "meeting at" in ok("coaching", "schedule", ident[:8], "--at", when, "--as", "tom")
    assert "cannot be done before" in refused("coaching", "done", ident, "--as", "tom")
    assert "evaluated after it is done" in refused("coaching", "evaluate", ident)

    listed = ok("coaching", "list", "crm")
    assert listed.splitlines()[0].split("\t")[:3] == ["assignment", "state", "manager"]
    assert {line.split("\t")[1] for line in listed.splitlines()[1:]} == {"scheduled", "assigned"}
    assert [a["assignment_id"] for a in json.loads(ok("coaching", "list", "crm", "--as", "tom", "--json"))] == [ident]
    shown = json.loads(ok("coaching", "show", ident, "--as", "tom", "--json"))
    assert [e["type"] for e in shown["history"]] == ["assigned", "scheduled"]
    assert shown["actions"] == ["schedule"] and "cancel" in shown["refused"]
    text = ok("coaching", "show", ident)
    assert "meeting with tom for m-1 (team north) on step offer" in text and "note: objections" in text

    assert "a reason" in refused("coaching", "cancel", ident, "--reason", " ", "--as", "dana")
    assert "cancelled (moved to another team)" in ok("coaching", "cancel", ident, "--reason", "moved to another team",
                                                     "--as", "dana")
    audit = json.loads(ok("sql", "SELECT actor, action, details FROM audit_log WHERE action LIKE 'coaching.%' "
                                 "ORDER BY at", "--format", "json"))
    assert [a["action"] for a in audit] == ["coaching.assigned", "coaching.assigned", "coaching.scheduled",
                                            "coaching.cancelled"]
    assert audit[0]["actor"] == "dana" and json.loads(audit[0]["details"])["via"].startswith("cli:")
    assert audit[1]["actor"].startswith("cli:")

    assert "nothing to evaluate yet" in ok("coaching", "evaluate", "--due")
    assert ok("coaching", "effectiveness", "crm").splitlines() == [
        "course\tevaluated\timproved\tshare improved (95%)\tmedian effect (95%)\tlasted"]
    notes = ok("coaching", "notifications", "--deliver")
    assert "delivered 0 of 4 due; 4 to retry" in notes and "cannot reach the webhook" in notes
    assert len(json.loads(ok("coaching", "notifications", "--status", "pending", "--json"))) == 4
