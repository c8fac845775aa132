"""Exporting step visits as an event log: CSV, XES 1.0 or OCEL 2.0 (JSON) for pm4py, Disco,
Celonis and the like.

One visit is one work item: a `start` event at its start and a `complete` event at its start plus
its wall time (active + idle + hidden). An XES trace is a service session. The session attributes
the process declares (`segment`, `channel`...) are `case:NAME` columns in CSV and trace attributes
in XES. Rows are read from ClickHouse in blocks (`query_row_block_stream`), so memory stays flat
whatever the period (OCEL keeps one entry per manager, customer and session for its objects).
"""

from __future__ import annotations

import csv
import json
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


def _period(since: date | None, until: date | None, column: str) -> tuple[list[str], dict[str, Any]]:
    where: list[str] = []
    parameters: dict[str, Any] = {}
    if since:
        where.append(f"{column} >= {{since:DateTime64(3, 'UTC')}}")
        parameters["since"] = datetime(since.year, since.month, since.day, tzinfo=UTC)
    if until:  # the last day is included
        where.append(f"{column} < {{until:DateTime64(3, 'UTC')}}")
        parameters["until"] = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
    return where, parameters


def _rows(client: Client, site: str, since: date | None, until: date | None,
          attributes: bool = False) -> Iterator[tuple[Any, ...]]:
    """Visits in session order; with `attributes`, each with its session's attributes (a map, empty
    for a session without them) as a tenth value."""
    where, parameters = _period(since, until, "started_at")
    where.insert(0, "site = {site:String}")
    parameters["site"] = site
    if attributes:
        # The sessions' attributes from their start events; a session begins at most a day before
        # its first visit of the period (STEPWATCH_MAX_DURATION_MS and the session timeout are shorter).
        sql = ("SELECT customer, session_id, step, manager, started_at, active_ms, idle_ms, hidden_ms, source, "
               "s.attributes FROM visits LEFT JOIN (SELECT session_id, "
               "argMinIf(attributes, at, action = 'start') AS attributes FROM session_events FINAL "
               "WHERE site = {site:String} AND action = 'start'"
               + (" AND at >= {since:DateTime64(3, 'UTC')} - INTERVAL 1 DAY" if since else "")
               + (" AND at < {until:DateTime64(3, 'UTC')}" if until else "")
               + f" GROUP BY session_id) AS s USING session_id WHERE {' AND '.join(where)} "
               "ORDER BY session_id, started_at, visit_id")
    else:
        sql = (f"SELECT customer, session_id, step, manager, started_at, active_ms, idle_ms, hidden_ms, source "
               f"FROM visits WHERE {' AND '.join(where)} ORDER BY session_id, started_at, visit_id")
    with client.query_row_block_stream(sql, parameters=parameters) as stream:
        for block in stream:
            yield from block


def _declared(client: Client, site: str) -> tuple[str, ...]:
    process = processes.latest(client, site)
    return tuple(process.attributes) if process else ()


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
    declared = _declared(client, site)
    writer = csv.writer(out, lineterminator="\n")
    # pm4py's name for a case attribute; it cannot clash with the fixed columns
    writer.writerow((*CSV_COLUMNS, *(f"case:{name}" for name in declared)))
    count = 0
    for customer, session, step, manager, started, active, idle, hidden, source, *more in _rows(
            client, site, since, until, bool(declared)):
        complete = started + timedelta(milliseconds=active + idle + hidden)
        attributes = more[0] if more else {}
        writer.writerow((customer or session, session, titles.get(step, step), manager, _stamp(started),
                         _stamp(complete), active, idle, hidden, source, *(attributes.get(n, "") for n in declared)))
        count += 1
    return count


def export_xes(client: Client, site: str, out: IO[str], since: date | None = None, until: date | None = None) -> int:
    """Write an XES 1.0 log, a trace per service session; returns the number of visits written."""
    sites.get_site(client, site)
    titles = _titles(client, site)
    declared = _declared(client, site)
    out.write(XES_HEADER.replace("{site}", quoteattr(site)))
    current = None
    count = 0
    for customer, session, step, manager, started, active, idle, hidden, source, *more in _rows(
            client, site, since, until, bool(declared)):
        if session != current:
            if current is not None:
                out.write("  </trace>\n")
            out.write(f'  <trace>\n    <string key="concept:name" value={quoteattr(session)}/>\n')
            if customer:
                out.write(f'    <string key="case" value={quoteattr(customer)}/>\n')
            for name, value in sorted((more[0] if more else {}).items()):
                if name in declared:
                    out.write(f'    <string key={quoteattr(name)} value={quoteattr(value)}/>\n')
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


# -- OCEL 2.0 ------------------------------------------------------------------------------------
#
# The JSON format of OCEL 2.0 (https://www.ocel-standard.org/): events and objects, each with a
# type, and qualified relationships from events to objects and between objects. Here the objects
# are the managers, the customers (their stored pseudonyms) and the service sessions; the events
# are the step visits (type: the step's title, at the visit's start, with its active, idle and
# hidden milliseconds) and the sessions' starts and ends. Ids carry their type
# (`manager:m-1`, `customer:…`, `session:…`, `visit:…`), so they never collide across types.

MANAGER, CUSTOMER, SESSION = "manager", "customer", "service session"
SESSION_START, SESSION_END = "session start", "session end"
_EPOCH = "1970-01-01T00:00:00+00:00"  # an object attribute's time when it is known from the start


def _sessions(client: Client, site: str, since: date | None, until: date | None) -> Iterator[tuple[Any, ...]]:
    where, parameters = _period(since, until, "started_at")
    parameters["site"] = site
    sql = ("SELECT session_id, manager, customer, started_at, ended_at, ended, outcome, attributes "
           "FROM service_sessions WHERE site = {site:String} AND started_at > 0"
           + "".join(f" AND {w}" for w in where) + " ORDER BY started_at, session_id")
    with client.query_row_block_stream(sql, parameters=parameters) as stream:
        for block in stream:
            yield from block


def export_ocel(client: Client, site: str, out: IO[str], since: date | None = None, until: date | None = None) -> int:
    """Write an OCEL 2.0 JSON log; returns the number of visits written (as the other formats).

    Events are written as they are read; the objects, which the events name, are written after
    them (a JSON object's keys have no order)."""
    sites.get_site(client, site)
    titles = _titles(client, site)
    declared = _declared(client, site)
    managers: set[str] = set()
    customers: set[str] = set()
    sessions: dict[str, tuple[str, str, dict[str, str], str]] = {}  # id -> manager, customer, attributes, outcome
    event_types: set[str] = set()
    dumps = json.dumps
    out.write('{"events": [')
    first = True

    def event(kind: str, event_id: str, moment: datetime, attributes: list[dict[str, Any]], manager: str,
              customer: str, session: str) -> None:
        nonlocal first
        links = [{"objectId": f"manager:{manager}", "qualifier": "performed by"},
                 {"objectId": f"session:{session}", "qualifier": "part of"}]
        if customer:
            links.append({"objectId": f"customer:{customer}", "qualifier": "for"})
        out.write(("\n" if first else ",\n") + dumps({"id": event_id, "type": kind, "time": _stamp(moment),
                                                      "attributes": attributes, "relationships": links}))
        first = False

    for session, manager, customer, started, ended_at, ended, outcome, attributes in _sessions(
            client, site, since, until):
        kept = {name: value for name, value in attributes.items() if name in declared}
        sessions[session] = (manager, customer, kept, outcome)
        managers.add(manager)
        if customer:
            customers.add(customer)
        event(SESSION_START, f"start:{session}", started, [], manager, customer, session)
        event_types.add(SESSION_START)
        if ended:
            event(SESSION_END, f"end:{session}", ended_at, [{"name": "outcome", "value": outcome}], manager,
                  customer, session)
            event_types.add(SESSION_END)
    count = 0
    for customer, session, step, manager, started, active, idle, hidden, _source in _rows(client, site, since, until):
        kind = titles.get(step, step)
        event_types.add(kind)
        managers.add(manager)
        if customer:
            customers.add(customer)
        if session not in sessions:  # an implicit session (no start or end event), or one begun before the period
            sessions[session] = (manager, customer, {}, "")
        count += 1
        event(kind, f"visit:{session}:{count}", started,
              [{"name": "active_ms", "value": active}, {"name": "idle_ms", "value": idle},
               {"name": "hidden_ms", "value": hidden}], manager, customer, session)
    out.write("\n],\n\"objects\": [")
    first = True

    def obj(value: dict[str, Any]) -> None:
        nonlocal first
        out.write(("\n" if first else ",\n") + dumps(value))
        first = False

    for manager in sorted(managers):
        obj({"id": f"manager:{manager}", "type": MANAGER, "attributes": [], "relationships": []})
    for customer in sorted(customers):
        obj({"id": f"customer:{customer}", "type": CUSTOMER, "attributes": [], "relationships": []})
    for session, (manager, customer, attributes, outcome) in sessions.items():
        links = [{"objectId": f"manager:{manager}", "qualifier": "served by"}]
        if customer:
            links.append({"objectId": f"customer:{customer}", "qualifier": "serves"})
        values = [{"name": name, "value": value, "time": _EPOCH} for name, value in sorted(attributes.items())]
        if outcome:
            values.append({"name": "outcome", "value": outcome, "time": _EPOCH})
        obj({"id": f"session:{session}", "type": SESSION, "attributes": values, "relationships": links})
    integer = "integer"
    out.write("\n],\n\"objectTypes\": " + dumps([
        {"name": MANAGER, "attributes": []},
        {"name": CUSTOMER, "attributes": []},
        {"name": SESSION, "attributes": [{"name": n, "type": "string"} for n in (*declared, "outcome")]},
    ]) + ",\n\"eventTypes\": " + dumps([
        {"name": kind, "attributes": [] if kind == SESSION_START else
         [{"name": "outcome", "type": "string"}] if kind == SESSION_END else
         [{"name": n, "type": integer} for n in ("active_ms", "idle_ms", "hidden_ms")]}
        for kind in sorted(event_types)]) + "}\n")
    return count
