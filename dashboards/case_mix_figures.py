"""The drawdown page's weekly medians for the client mix (analysis/strata.py): a manager's sessions on a
step, each divided by its kind of client's factor, as the analysis divides them before it compares
them with the band. The evidence chart then plots the figures the flag's median and sentence rest on,
not the times as measured.

One read: each session's time on the step (summed over its days, dated by its first, the newest
refresh of each day, as the analysis reads them) with its start event's attributes. The factors are
the analysis' own, from the stats row's `case_mix`; a kind of client the row does not list takes 1,
as the analysis gives a kind with too few sessions of the team.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from kernel.storage import METRIC_COLUMNS


def has_adjustment(mix: Mapping[str, Any] | None) -> bool:
    """Whether a stats row's `case_mix` changes any session's time (some kind of client's factor is not 1)."""
    return bool(mix) and any(s["factor"] != 1 for s in mix["strata"])  # type: ignore[index]


def factor_of(attributes: Mapping[str, str], declared: Mapping[str, Sequence[str]],
              strata: Sequence[Mapping[str, Any]]) -> float:
    """A session's factor: its declared values (a value not declared counts as none, as in the analysis'
    read) matched with a stratum of the row's `case_mix`; 1 when the row has no such stratum."""
    mine = {name: attributes[name] for name in declared if attributes.get(name) in declared[name]}
    return next((float(s["factor"]) for s in strata if s["attributes"] == mine), 1.0)


def adjusted_weekly_medians(client: Client, site: str, step: str, manager: str, since: date, until: date, *,
                            mix: Mapping[str, Any], declared: Mapping[str, Sequence[str]],
                            metric: str = "visible") -> dict[date, tuple[int, float]]:
    """{Monday: (sessions, median of the mix-adjusted times)} of `manager` on `step` from `since` to
    `until` (both included), a week for each Monday with sessions."""
    column = METRIC_COLUMNS[metric]  # chosen by name: nothing from outside enters the SQL
    rng = "site = {site:String} AND day >= {since:Date} AND day <= {until:Date}"
    rows = client.query(
        f"""
        SELECT toMonday(s.first_day) AS week, s.t, e.attributes
        FROM (
            SELECT session_id, min(day) AS first_day, sum({column}) AS t FROM session_steps
            WHERE {rng} AND step = {{step:String}} AND manager = {{manager:String}}
              AND (day, computed_at) IN (SELECT day, max(computed_at) FROM session_steps WHERE {rng} GROUP BY day)
            GROUP BY session_id
        ) AS s
        LEFT JOIN (
            SELECT session_id, argMin(attributes, at) AS attributes FROM session_events
            WHERE site = {{site:String}} AND manager = {{manager:String}} AND action = 'start'
              AND at >= {{starts:Date}} AND at < {{ends:Date}}
            GROUP BY session_id
        ) AS e ON s.session_id = e.session_id
        """,
        parameters={"site": site, "step": step, "manager": manager, "since": since, "until": until,
                    "starts": since - timedelta(days=1), "ends": until + timedelta(days=1)},
    ).result_rows
    strata = mix["strata"]
    weeks: dict[date, list[float]] = defaultdict(list)
    for week, time_ms, attributes in rows:
        weeks[week].append(float(time_ms) / factor_of(attributes or {}, declared, strata))
    return {week: (len(times), float(np.median(times))) for week, times in sorted(weeks.items())}
