"""Acknowledged events survive ClickHouse being unreachable and the collector being SIGKILLed."""

from __future__ import annotations

import json
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import http, run_cli, serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_sigkill_after_acknowledgement_loses_nothing(tmp_path: Path) -> None:
    data, spool = tmp_path / "data", tmp_path / "spool"
    embedded = {"STEPWATCH_DATA_DIR": str(data), "STEPWATCH_SPOOL_DIR": str(spool)}
    code, out, err = run_cli("sites", "add", "crm", "--origin", "https://crm.example.com", "--json", env=embedded)
    assert code == 0, err
    key = json.loads(out)["key"]
    with serve(embedded, tmp_path):
        pass  # a first run leaves the sites snapshot beside the spool

    # ClickHouse unreachable: a server URL where nothing listens.
    down = {**embedded, "STEPWATCH_CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}/stepwatch",
            "STEPWATCH_SPOOL_RETRY_S": "3600"}
    now = int(time.time() * 1000)
    ids = {step: str(uuid.uuid4()) for step in ("offer", "contract", "payment")}
    visits = [{"type": "visit", "visit_id": ids[step], "seq": seq, "final": seq == 1, "manager": "m-1",
               "session_id": "s-1", "process": "sales", "step": step, "started_at": now - 60_000,
               "active_ms": 1000 * (seq + 1), "idle_ms": 0, "hidden_ms": 0}
              for step in ("offer", "contract", "payment") for seq in (0, 1)]
    batch = {"site": key, "events": visits}
    with serve(down, tmp_path) as collector:
        status, body = http("POST", collector.url + "/v1/events", batch, {"Content-Type": "text/plain"})
        assert (status, body) == (200, {"accepted": 6, "rejected": []}), collector.logs()
        status, ready = http("GET", collector.url + "/readyz")
        assert status == 503 and ready["spool_events"] == 6
        collector.proc.send_signal(signal.SIGKILL)  # between acknowledgement and flush
        collector.proc.wait()
    assert list(spool.glob("spool-*.log"))

    with serve(embedded, tmp_path) as collector:  # replays the spool at start
        code, out, err = run_cli("sql", "SELECT step, seq, active_ms FROM visits ORDER BY step", "--format", "json",
                                 env=embedded)
        assert code == 0, err
        assert json.loads(out) == [
            {"step": "contract", "seq": 1, "active_ms": 2000},
            {"step": "offer", "seq": 1, "active_ms": 2000},
            {"step": "payment", "seq": 1, "active_ms": 2000},
        ]
        # the tracker, never told of the crash, may send the batch again: still counted once
        status, _ = http("POST", collector.url + "/v1/events", batch, {"Content-Type": "text/plain"})
        assert status == 200
        for _ in range(100):  # wal mode: shipped to ClickHouse within STEPWATCH_FLUSH_MS
            if http("GET", collector.url + "/readyz")[1]["spool_events"] == 0:
                break
            time.sleep(0.05)
        code, out, _ = run_cli("sql", "SELECT count() AS n FROM visits", "--format", "json", env=embedded)
        assert json.loads(out) == [{"n": 3}]
    assert not list(spool.glob("spool-*.log"))
