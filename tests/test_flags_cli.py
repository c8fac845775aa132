"""analyze, stats and the flag lifecycle from the command line, and the schedule inside serve."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers import http, run_cli, serve

# Slow; and one xdist worker runs this module, so its module-scoped data is built once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_flags_cli")]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {"STEPWATCH_DATA_DIR": str(tmp_path_factory.mktemp("flags") / "data")}
    assert run_cli("demo", "--no-serve", "--managers", "12", "--days", "35", env=env)[0] == 0
    assert run_cli("bands", "suggest", "demo", "--apply", "--reason", "first bands", env=env)[0] == 0
    return env


def test_analyze_reports_and_stats_prints_one_object_per_pair(env: dict[str, str]) -> None:
    code, out, err = run_cli("analyze", env=env)
    assert code == 0, err
    assert "manager x step pairs" in out and "drawdowns" in out
    # the demo's fast drawdown is planted from the first day of its history: dated "at least since"
    assert "at least since" in out
    code, out, err = run_cli("stats", "--site", "demo", "--json", env=env)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len({(r["manager"], r["step"]) for r in rows}) > 12
    for row in rows:
        assert {"manager", "step", "n", "median_ms", "p90_ms", "band", "status", "minutes_lost_per_week",
                "minutes_above_reference_per_week", "peers", "flag_id", "flag_kind", "start_date",
                "start_at_least"} <= set(row)
        assert row["status"] in ("ok", "watch", "slow", "fast", "insufficient")
        # time lost is a slow pair's minutes above the reference, and nobody else's
        if row["status"] == "slow":
            assert row["minutes_lost_per_week"] == row["minutes_above_reference_per_week"]
        elif row["minutes_above_reference_per_week"] is not None:
            assert row["minutes_lost_per_week"] == 0.0
    flagged = [r for r in rows if r["flag_id"]]
    assert flagged and all(r["status"] in ("slow", "fast") for r in flagged)
    # the onset of a flag, and whether the data begins inside it, as the flag stores them
    dated = next(r for r in flagged if r["start_date"])
    assert dated["start_at_least"] in (True, False)
    code, out, err = run_cli("flags", "show", dated["flag_id"], "--json", env=env)
    assert code == 0, err
    shown = json.loads(out)
    shown = shown.get("flag", shown)
    assert (shown["start_date"], shown["start_at_least"]) == (dated["start_date"], dated["start_at_least"])
    code, out, _ = run_cli("stats", "--site", "demo", "--team", "north", "--json", env=env)
    assert {json.loads(line)["team"] for line in out.splitlines()} == {"north"}
    code, _, err = run_cli("stats", "--since", "2026-02-01", "--until", "2026-01-01", env=env)
    assert code == 1 and "--since" in err


def test_every_flag_transition_and_every_refusal(env: dict[str, str]) -> None:
    run_cli("analyze", env=env)
    code, out, _ = run_cli("flags", "list", "demo", "--json", env=env)
    flags = json.loads(out)
    # The demo coaches some slow flags already (status coaching); a dismissal may end those too.
    first = next(f["flag_id"] for f in flags if f["status"] == "open")
    second = next(f["flag_id"] for f in flags if f["status"] in ("open", "coaching") and f["flag_id"] != first)

    def move(action: str, flag: str, *extra: str) -> tuple[int, str]:
        code, out, err = run_cli("flags", action, flag, *extra, env=env)
        return code, out + err

    assert move("dismiss", first)[0] == 1  # a reason is required
    assert move("ack", first) == (0, f"flag {first}: open -> acknowledged\n")
    code, text = move("ack", first)
    assert code == 1 and "cannot go from acknowledged to acknowledged" in text
    assert move("resolve", first)[0] == 0
    code, text = move("ack", first)
    assert code == 1 and "from resolved" in text
    assert move("reopen", first)[0] == 1  # needs a reason
    assert move("reopen", first, "--reason", "came back in review")[0] == 0
    assert move("dismiss", second, "--reason", "new CRM page for this step")[0] == 0
    code, text = move("ack", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "no flag" in text

    code, out, _ = run_cli("flags", "show", first, env=env)
    history = json.loads(out)["history"]
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        ("", "open"), ("open", "acknowledged"), ("acknowledged", "resolved"), ("resolved", "open")]
    assert history[1]["actor"].startswith("cli:")
    code, out, _ = run_cli("sql", "SELECT reason FROM audit_log WHERE action = 'flag.dismissed'", "--format", "json",
                           env=env)
    assert json.loads(out) == [{"reason": "new CRM page for this step"}]
    code, out, err = run_cli("flags", "kpi", "demo", "--json", env=env)
    assert code == 0, err
    kpi = json.loads(out)
    assert sum(r["resolved"] for r in kpi) == 1 and kpi[0]["median_hours"] >= 0


def test_serve_runs_the_analysis_on_a_schedule(env: dict[str, str], tmp_path: Path) -> None:
    run_cli("sql", "SELECT 1", env=env)
    with serve({**env, "STEPWATCH_ANALYSIS_INTERVAL_S": "1"}, tmp_path) as server:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "analysis ran" not in server.logs():
            time.sleep(0.5)
        assert "analysis ran" in server.logs()
        assert http("GET", server.url + "/healthz")[0] == 200


def test_stats_reads_the_latest_analysis_and_recomputes_on_request(env: dict[str, str]) -> None:
    run_cli("analyze", env=env)
    code, saved, _ = run_cli("stats", "--site", "demo", "--json", env=env)
    code, fresh, _ = run_cli("stats", "--site", "demo", "--json", "--fresh", env=env)
    strip = [{k: v for k, v in json.loads(line).items() if k != "flag_id"} for line in saved.splitlines()]
    assert strip == [{k: v for k, v in json.loads(line).items() if k != "flag_id"} for line in fresh.splitlines()]
    code, out, _ = run_cli("stats", "--site", "demo", env=env)
    assert out.startswith("# demo: as analysed at")


def test_stats_and_flags_list_read_as_words(env: dict[str, str]) -> None:
    run_cli("analyze", env=env)
    code, out, _ = run_cli("stats", "--site", "demo", "--json", env=env)
    rows = [json.loads(line) for line in out.splitlines()]
    code, text, err = run_cli("stats", "--site", "demo", env=env)
    assert code == 0, err
    lines = [line.split("\t") for line in text.splitlines()[1:]]
    head, body = lines[0], lines[1:]
    assert head == ["manager", "step", "sessions", "median", "p90", "reference", "verdict", "since",
                    "time lost a week", "note"]
    assert len(body) == len(rows)
    by_verdict = {line[6] for line in body}
    assert by_verdict <= {"on track", "slow", "too fast", "watch", "too few sessions", "no band yet"}
    assert {"slow", "on track"} <= by_verdict and not any(line[0] == "" for line in body)
    slow = [line for line in body if line[6] == "slow"]
    assert all(line[8].endswith(" min") and line[8] != "0 min" for line in slow)
    assert any(line[7].startswith(("since ", "at least since ")) for line in slow)
    above = [line for line in body if line[6] == "on track" and "above the reference (not a drawdown)" in line[9]]
    assert above and all(line[8] == "0 min" for line in above)
    assert "Оплата" in {line[1] for line in body}  # steps by title (the demo titles its steps in Russian)
    inside = [r for r in rows if r["status"] == "slow" and r["median_ms"] <= r["band"]["max_ms"] and r["peers"]]
    for r in inside:
        assert any(f"slower than {r['peers']['slower_than']} of {r['peers']['of']} teammates" in line[9]
                   for line in body if line[0].endswith(f"({r['manager']})") or line[0] == r["manager"])
    code, text, err = run_cli("flags", "list", "demo", env=env)
    assert code == 0, err
    flags = [line.split("\t") for line in text.splitlines()]
    assert flags[0][-2:] == ["since", "time lost a week"]
    fast = [line for line in flags[1:] if line[2] == "fast"]
    assert fast and all(line[-1] == "none (possible skipped work)" for line in fast)
    assert any(line[-2].startswith("at least since ") for line in fast)  # the demo's fast one began before its data
    assert all(line[-1].endswith(" min") for line in flags[1:] if line[2] in ("slow", "systemic"))
