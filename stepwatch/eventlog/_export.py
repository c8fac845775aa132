"""Exporting step visits as an event log: CSV, or XES 1.0 for pm4py, Disco, Celonis and the like.

One visit is one work item: a `start` event at its start and a `complete` event at its start plus
its wall time (active + idle + hidden). An XES trace is a service session. Rows are read from
ClickHouse in blocks (`query_row_block_stream`), so memory stays flat whatever the period.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any
from xml.sax.saxutils import quoteattr

from clickhouse_connect.driver.client import Client

from kernel import processes, sites

CSV_COLUMNS = ("case", "session_id", "activity", "resource", "start", "complete", "active_ms", "idle_ms",
               "hidden_ms", "source")

XES_HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1.0" xes.features="" xmlns="http://www.xes-standard.org">
  <extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
  <extension name="Lifecycle" prefix="lifecycle" uri="http://www.xes-standard.org/lifecycle.xesext"/>
  <extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>
  <extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
  <global scope="trace">
    <string key="concept:name" value="__INVALID__"/>
  </global>
  <global scope="event">
    <string key="concept:name" value="__INVALID__"/>
    <string key="lifecycle:transition" value="complete"/>
    <string key="org:resource" value="__INVALID__"/>
    <date key="time:timestamp" value="1970-01-01T00:00:00.000+00:00"/>
  </global>
  <classifier name="Activity" keys="concept:name"/>
  <string key="concept:name" value={site}/>
  <string key="lifecycle:model" value="standard"/>
  <string key="source" value="stepwatch"/>
"""


def _rows(client: Client, site: str, since: date | None, until: date | None) -> Iterator[tuple[Any, ...]]:
    where = ["site = {site:String}"]
    parameters: dict[str, Any] = {"site": site}
    if since:
        where.append("started_at >= {since:DateTime64(3, 'UTC')}")
        parameters["since"] = datetime(since.year, since.month, since.day, tzinfo=UTC)
    if until:  # the last day is included
        where.append("started_at < {until:DateTime64(3, 'UTC')}")
        parameters["until"] = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
    sql = (f"SELECT customer, session_id, step, manager, started_at, active_ms, idle_ms, hidden_ms, source "
           f"FROM visits WHERE {' AND '.join(where)} ORDER BY session_id, started_at, visit_id")
    with client.query_row_block_stream(sql, parameters=parameters) as stream:
        for block in stream:
            yield from block


def _titles(client: Client, site: str) -> dict[str, str]:
    """Step key -> title: tools show the activity by its name (for imported steps, the log's own)."""
    process = processes.latest(client, site)
    return {s.key: s.title for s in process.steps} if process else {}


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def export_csv(client: Client, site: str, out: IO[str], since: date | None = None, until: date | None = None) -> int:
    """Write one row per visit; returns the number of visits written."""
    sites.get_site(client, site)
    titles = _titles(client, site)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for customer, session, step, manager, started, active, idle, hidden, source in _rows(client, site, since, until):
        complete = started + timedelta(milliseconds=active + idle + hidden)
        writer.writerow((customer or session, session, titles.get(step, step), manager, _stamp(started),
                         _stamp(complete), active, idle, hidden, source))
        count += 1
    return count


def export_xes(client: Client, site: str, out: IO[str], since: date | None = None, until: date | None = None) -> int:
    """Write an XES 1.0 log, a trace per service session; returns the number of visits written."""
    sites.get_site(client, site)
    titles = _titles(client, site)
    out.write(XES_HEADER.replace("{site}", quoteattr(site)))
    current = None
    count = 0
    for customer, session, step, manager, started, active, idle, hidden, source in _rows(client, site, since, until):
        if session != current:
            if current is not None:
                out.write("  </trace>\n")
            out.write(f'  <trace>\n    <string key="concept:name" value={quoteattr(session)}/>\n')
            if customer:
                out.write(f'    <string key="case" value={quoteattr(customer)}/>\n')
            current = session
        name, who = quoteattr(titles.get(step, step)), quoteattr(manager)
        complete = started + timedelta(milliseconds=active + idle + hidden)
        for transition, moment, extra in (
            ("start", started, ""),
            ("complete", complete, f'\n      <int key="active_ms" value="{active}"/>'
                                   f'\n      <int key="idle_ms" value="{idle}"/>'
                                   f'\n      <int key="hidden_ms" value="{hidden}"/>'
                                   f'\n      <string key="source" value={quoteattr(source)}/>'),
        ):
            out.write(f'    <event>\n      <string key="concept:name" value={name}/>\n'
                      f'      <string key="lifecycle:transition" value="{transition}"/>\n'
                      f'      <string key="org:resource" value={who}/>\n'
                      f'      <date key="time:timestamp" value="{_stamp(moment)}"/>{extra}\n    </event>\n')
        count += 1
    if current is not None:
        out.write("  </trace>\n")
    out.write("</log>\n")
    return count
