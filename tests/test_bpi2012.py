"""The real BPI Challenge 2012 work-item log: imported through the CLI, `stats` agrees with an
independent computation written here (ElementTree, datetime and statistics; no stepwatch code).

The two agree on these definitions (docs/import-export.md):
- a work item is a `start` paired with the next `complete` of the same case, activity and
  resource; a second `start` before the `complete` replaces the first;
- items longer than STEPWATCH_MAX_DURATION_MS (12 h) are left out (left open, not work time);
  zero-length items are kept; `SYS` is a resource like any other;
- a session-step is one case x resource x activity; its time is the sum of its items;
- the window is the whole log (first to last UTC day), so no session-step is split by it.
"""

from __future__ import annotations

import gzip
import json
import re
import statistics
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.helpers import run_cli

LOG = SHARED_DATA / "bpi2012_work_items.xes.gz"
NS = "{http://www.xes-standard.org}"
TWELVE_HOURS_MS = 12 * 3600 * 1000

pytestmark = pytest.mark.skipif(not LOG.exists(), reason=f"{LOG} is absent (CI has ../shared beside the checkout)")


@pytest.mark.slow
def test_stats_over_the_whole_log_match_an_independent_computation(tmp_path: Path) -> None:
    expected, items, too_long, first, last = _independent()
    env = {"STEPWATCH_DATA_DIR": str(tmp_path / "data"), "STEPWATCH_RETENTION_DAYS": "10000"}
    assert run_cli("sites", "add", "bpi", "--origin", "https://crm.example.com", env=env)[0] == 0
    code, out, err = run_cli("import", str(LOG), "--site", "bpi", "--json", env=env, timeout=300)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["events"] == 118_604
    assert summary["visits"] == items
    assert summary["bad_by_reason"]["longer than STEPWATCH_MAX_DURATION_MS (12 h)"] == too_long

    since, until = first.astimezone(UTC).date().isoformat(), last.astimezone(UTC).date().isoformat()
    code, out, err = run_cli("stats", "--site", "bpi", "--since", since, "--until", until, "--json", "--fresh",
                             env=env, timeout=300)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    got = {(r["manager"], r["step"]): (r["n"], r["median_ms"]) for r in rows}
    want = {pair: (len(times), round(float(statistics.median(times)), 1)) for pair, times in expected.items()}
    assert got.keys() == want.keys()
    different = {pair: (got[pair], want[pair]) for pair in want if got[pair] != want[pair]}
    assert not different
    assert len(want) > 200  # every manager x step of the log, SYS included
    assert any(manager == "SYS" for manager, _ in want)


def _independent() -> tuple[dict[tuple[str, str], list[int]], int, int, datetime, datetime]:
    """(resource, step key) -> each session-step's time in ms; work items kept; items over 12 h;
    first and last start. ElementTree, a whole trace at a time: its case is its `concept:name`."""
    open_items: dict[tuple[str, str, str], datetime] = {}
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    starts: list[datetime] = []
    too_long = 0
    with gzip.open(LOG) as f:
        for _, element in ET.iterparse(f, events=("end",)):
            if element.tag != NS + "trace":
                continue
            case = next(c.get("value") for c in element if c.get("key") == "concept:name")
            open_items.clear()
            for event in element.iter(NS + "event"):
                values = {child.get("key"): child.get("value") for child in event}
                key = (str(case), str(values["concept:name"]), str(values["org:resource"]))
                at = datetime.fromisoformat(str(values["time:timestamp"]))
                if values["lifecycle:transition"] == "start":
                    open_items[key] = at
                elif key in open_items:
                    began = open_items.pop(key)
                    ms = (at - began) // timedelta(milliseconds=1)
                    if 0 <= ms <= TWELVE_HOURS_MS:
                        totals[key] += ms
                        starts.append(began)
                    elif ms > TWELVE_HOURS_MS:
                        too_long += 1
            element.clear()
    per_pair: dict[tuple[str, str], list[int]] = defaultdict(list)
    for (_, activity, resource), ms in totals.items():
        per_pair[(resource, re.sub(r"[^A-Za-z0-9_.:\-]+", "_", activity))].append(ms)
    return per_pair, len(starts), too_long, min(starts), max(starts)
