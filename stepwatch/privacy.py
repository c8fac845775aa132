"""Data rights: everything stored about one manager, exported as a ZIP of CSV files, or erased.

Both span every part (the collector's visits and spool, the analysis' derived tables and flags,
coaching, the directory, the accounts, the audit log), so they live in the application.

Export: `export(client, site, manager, path)` writes the ZIP to `path` table by table; each table's
rows stream from ClickHouse as CSV straight into the archive, so memory stays flat however many
visits a year holds. `README.txt` inside says what each file is.

Erasure: `erase(client, site, manager, ...)` finds the tables to clean from ClickHouse's own
`system.columns` (every table with a column named `manager`, and with `managers` for arrays), so a
table added later is covered without a change here, then the tables that name the person another
way (flag history and coaching by their ids, the account by `manager_id`, the audit log). A
systemic flag stays (it is about a team's step) without the person in its `managers` list.
The audit keeps `manager.erase` with a keyed hash of the id, never the id or the name.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from collector.spool import TABLES as SPOOL_TABLES
from kernel import audit, sites
from kernel.errors import NotFound
from kernel.storage import SESSION_EVENT_COLUMNS, VISIT_COLUMNS, query_rows

ERASED = "(erased)"


@dataclass(frozen=True)
class Part:
    """One CSV file of an export: its name, what it is (for the README), and the query for it."""

    file: str
    about: str
    sql: str


# Every query takes {site}, {manager}, {flags} (the person's flag ids), {assignments} (their
# coaching assignment ids), {accounts} (their login names) and {quoted} (the id as JSON writes it).
_PARTS = (
    Part("directory.csv", "Your entry in the directory of managers: the name and e-mail shown for your id, "
                          "every version with who changed it and when.",
         "SELECT manager, name, email, changed_by, changed_at FROM managers "
         "WHERE site = {site:String} AND manager = {manager:String} ORDER BY version"),
    Part("teams.csv", "The teams you were placed in, every change with who made it and when "
                      "(an empty team: you left every team).",
         "SELECT manager, team, changed_by, changed_at FROM team_members "
         "WHERE site = {site:String} AND manager = {manager:String} ORDER BY version"),
    Part("accounts.csv", "Your login account(s) linked to your id: name, role, language, whether disabled. "
                         "The password is stored only as an Argon2id hash and is not exported.",
         "SELECT name, role, teams, manager_id, language, email, disabled FROM users FINAL "
         "WHERE manager_id = {manager:String} ORDER BY name"),
    Part("visits.csv", "Every stay on a CRM step the tracker reported: when it began, the step and the "
                       "sanitized page path, active / idle / hidden milliseconds. `customer` is a pseudonym "
                       "(a keyed hash), never the customer's reference.",
         "SELECT visit_id, session_id, customer, process, step, path, started_at, active_ms, idle_ms, hidden_ms, "
         "tracker, source FROM visits WHERE site = {site:String} AND manager = {manager:String} "
         "ORDER BY started_at, visit_id"),
    Part("sessions.csv", "The start and end of each client you served (a service session), with the outcome "
                         "reported at its end.",
         "SELECT event_id, session_id, action, customer, process, at, outcome, tracker, source "
         "FROM session_events FINAL WHERE site = {site:String} AND manager = {manager:String} "
         "ORDER BY at, event_id"),
    Part("session_steps.csv", "Derived: your time on each step in each session and day, as the analysis "
                              "reads it (visible = active + idle; wall = first to last moment on the step).",
         "SELECT day, step, session_id, visible_ms, active_ms, wall_ms, computed_at FROM session_steps FINAL "
         "WHERE site = {site:String} AND manager = {manager:String} ORDER BY day, step, session_id"),
    Part("session_days.csv", "Derived: each session's first start and last end per day (a hash stands for the "
                             "session id).",
         "SELECT day, session, min(started) AS started, max(ended) AS ended FROM session_days "
         "WHERE site = {site:String} AND manager = {manager:String} GROUP BY day, session ORDER BY day, session"),
    Part("step_days.csv", "Derived: the same step times as session_steps.csv, gathered per step and day "
                          "(one list of milliseconds per column).",
         "SELECT day, step, visible_ms, active_ms, wall_ms, computed_at FROM pair_days "
         "WHERE site = {site:String} AND manager = {manager:String} ORDER BY day, step, computed_at"),
    Part("session_paths.csv", "Derived: the steps of each session in each day in the order you took them (a "
                              "step visited again right after itself counts once), when each began and the time "
                              "on each, as the paths page reads them.",
         "SELECT day, session_id, steps, starts, visible_ms, active_ms, wall_ms, computed_at FROM session_paths FINAL "
         "WHERE site = {site:String} AND manager = {manager:String} ORDER BY day, session_id"),
    Part("figures.csv", "Derived: the latest figures per step the analysis computed (median, band, peer test) "
                        "as JSON, with the window they cover.",
         "SELECT run_at, window_start, window_end, team, step, row FROM pair_stats FINAL "
         "WHERE site = {site:String} AND manager = {manager:String} ORDER BY step"),
    Part("flags.csv", "Drawdown and watch flags about you, and systemic flags that list you among a team's "
                      "slow managers (kind = systemic): status, window, median, band, reasons.",
         "SELECT flag_id, kind, team, step, manager, has(managers, {manager:String}) AS listed, status, opened_at, "
         "updated_at, resolved_at, window_start, window_end, n, median_ms, min_ms, reference_ms, max_ms, q_value, "
         "start_date, minutes_lost_per_week, reasons FROM flags FINAL "
         "WHERE site = {site:String} AND (manager = {manager:String} OR has(managers, {manager:String})) "
         "ORDER BY opened_at, flag_id"),
    Part("flag_history.csv", "Every status change of those flags: who changed it, when, from what to what, why.",
         "SELECT flag_id, at, actor, from_status, to_status, reason FROM flag_events "
         "WHERE site = {site:String} AND flag_id IN {flags:Array(UUID)} ORDER BY flag_id, at"),
    Part("coaching.csv", "Your coaching assignments, event by event (assigned, scheduled, done, evaluated, ...) "
                         "with who acted and the values of each change as JSON.",
         "SELECT assignment_id, seq, at, actor, type, reason, payload FROM coaching_events "
         "WHERE site = {site:String} AND assignment_id IN {assignments:Array(UUID)} ORDER BY assignment_id, seq"),
    Part("coaching_evaluations.csv", "How each assignment was evaluated: the windows before and after, "
                                     "medians, change, the effect against peers, the verdict.",
         "SELECT assignment_id, checkpoint, evaluated_at, pre_since, pre_until, post_since, post_until, verdict, "
         "target_met, pre_n, post_n, pre_median_ms, post_median_ms, change_pct, relative_effect_pct, "
         "minutes_saved_per_week, figures FROM coaching_evaluations FINAL "
         "WHERE site = {site:String} AND assignment_id IN {assignments:Array(UUID)} "
         "ORDER BY assignment_id, checkpoint"),
    Part("audit.csv", "Entries of the audit log about you: changes to your name, team, account, flags and "
                      "coaching, and entries whose details name your id.",
         "SELECT at, actor, action, object, reason, details FROM audit_log "
         "WHERE object = {site_manager:String} OR startsWith(object, {site_manager_slash:String}) "
         "OR object IN {flag_strings:Array(String)} "
         "OR object IN {assignment_strings:Array(String)} OR object IN {accounts:Array(String)} "
         "OR position(details, {quoted:String}) > 0 ORDER BY at"),
)


@dataclass(frozen=True)
class Person:
    """A manager of a site and the ids that point at them from other tables."""

    site: str
    manager: str
    flags: tuple[str, ...]
    assignments: tuple[str, ...]
    accounts: tuple[str, ...]
    names: tuple[str, ...]  # every name the directory ever held for them

    def parameters(self) -> dict[str, Any]:
        return {"site": self.site, "manager": self.manager, "site_manager": f"{self.site}/{self.manager}",
                "site_manager_slash": f"{self.site}/{self.manager}/",
                "flags": list(self.flags), "flag_strings": list(self.flags),
                "assignments": list(self.assignments), "assignment_strings": list(self.assignments),
                "accounts": list(self.accounts), "quoted": json.dumps(self.manager)}


def find_person(client: Client, site: str, manager: str) -> Person:
    """The person, or NotFound when the site does not exist or holds nothing about the id."""
    sites.get_site(client, site)  # NotFound for an unknown site
    held = any(_holds(client, table, site, manager) for table in tables_with_manager(client))
    if not manager or not (held or _accounts(client, manager)):
        raise NotFound(f"site {site} holds nothing about a manager {manager!r}")
    p = {"site": site, "manager": manager}
    flags = [str(r["flag_id"]) for r in query_rows(
        client, "SELECT DISTINCT flag_id FROM flags WHERE site = {site:String} AND manager = {manager:String} "
                "ORDER BY flag_id", p)]
    assignments = [str(r["assignment_id"]) for r in query_rows(
        client, "SELECT DISTINCT assignment_id FROM coaching_events WHERE site = {site:String} AND type = 'assigned' "
                "AND JSONExtractString(payload, 'manager') = {manager:String} ORDER BY assignment_id", p)]
    names = [r["name"] for r in query_rows(
        client, "SELECT DISTINCT name FROM managers WHERE site = {site:String} AND manager = {manager:String} "
                "AND name != '' ORDER BY name", p)]
    return Person(site, manager, tuple(flags), tuple(assignments), tuple(_accounts(client, manager)), tuple(names))


def _accounts(client: Client, manager: str) -> list[str]:
    return [r["name"] for r in query_rows(
        client, "SELECT DISTINCT name FROM users WHERE manager_id = {manager:String} ORDER BY name",
        {"manager": manager})]


def _holds(client: Client, table: str, site: str, manager: str) -> bool:
    return bool(client.command(f"SELECT count() > 0 FROM {_name(table)} WHERE site = {{site:String}} "
                               f"AND manager = {{manager:String}}", parameters={"site": site, "manager": manager}))


def tables_with_manager(client: Client, column: str = "manager") -> list[str]:
    """Stored tables (no views) of this database with a column of that name and a `site` column."""
    return [r["table"] for r in query_rows(client, """
        SELECT c.table AS table FROM system.columns AS c
        INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table
        WHERE c.database = currentDatabase() AND c.name = {column:String}
          -- on a cluster (kernel/cluster.py) the Distributed tables, whose deletes reach every shard
          AND (t.engine LIKE '%MergeTree' AND NOT endsWith(c.table, '_local') OR t.engine = 'Distributed')
          AND c.table IN (SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'site')
        ORDER BY c.table""", {"column": column})]


def _name(table: str) -> str:
    if not table.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {table!r}")
    return f"`{table}`"


# -- export -------------------------------------------------------------------------------------------

def _notes_part(client: Client) -> Part | None:
    """The context notes (table `notes`), when this version of the schema has them."""
    columns = [r["name"] for r in query_rows(
        client, "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'notes' "
                "ORDER BY position")]
    if "site" not in columns or "manager" not in columns:
        return None
    shown = ", ".join(f"`{c}`" for c in columns if c not in ("site", "manager"))
    return Part("notes.csv", "The context notes attached to your weeks, steps, flags or coaching.",
                f"SELECT {shown} FROM notes WHERE site = {{site:String}} AND manager = {{manager:String}}")


def parts(client: Client) -> list[Part]:
    notes = _notes_part(client)
    return [*_PARTS, *([notes] if notes else [])]


def readme(person: Person, files: list[tuple[Part, int]], made_at: str) -> str:
    lines = [
        "stepwatch: everything stored about one manager",
        "",
        f"Site: {person.site}",
        f"Manager id: {person.manager}",
        f"Exported at: {made_at} (UTC)",
        "",
        "Each file is CSV (UTF-8, comma-separated, a header line; times in UTC, durations in milliseconds).",
        "",
    ]
    for part, rows in files:
        lines += [f"{part.file} ({rows} row{'s' if rows != 1 else ''})", f"    {part.about}", ""]
    lines += [
        "Never collected: page content, keystrokes, form fields, screenshots, customer names or references.",
        "To have a name corrected, or the data erased, ask your stepwatch administrator",
        "(the commands are `stepwatch managers set` and `stepwatch managers erase`).",
        "",
    ]
    return "\n".join(lines)


def export(client: Client, site: str, manager: str, path: Path, *, actor: str) -> dict[str, int]:
    """Write the ZIP to `path` (raises OSError when it cannot be written); rows per file."""
    person = find_person(client, site, manager)
    parameters = person.parameters()
    counts: list[tuple[Part, int]] = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for part in parts(client):
            rows = -1  # the header line
            with archive.open(part.file, "w") as out:
                for chunk in client.raw_stream(part.sql, parameters=parameters, fmt="CSVWithNames"):
                    out.write(chunk)
                    rows += chunk.count(b"\n")
            counts.append((part, max(rows, 0)))
        archive.writestr("README.txt", readme(person, counts, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())))
    audit.record(client, actor, "manager.export", f"{site}/{manager}", "",
                 {"files": len(counts)})
    return {part.file: rows for part, rows in counts}


# -- erasure ------------------------------------------------------------------------------------------

@dataclass
class Erasure:
    """What an erasure removed: rows per table (counted before), spool rows, the audit's hash."""

    site: str
    subject: str  # the keyed hash the audit keeps instead of the id
    rows: dict[str, int] = field(default_factory=dict)
    systemic_flags: int = 0  # systemic flags the person was taken off
    audit_redacted: int = 0  # audit entries about others that named the person, the name taken out
    messages_redacted: int = 0  # notifications and digests (the outbox) that named the person
    spool_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"site": self.site, "subject": self.subject, "rows": self.rows, "systemic_flags": self.systemic_flags,
                "audit_redacted": self.audit_redacted,
                "messages_redacted": self.messages_redacted, "spool_rows": self.spool_rows}


def subject_hash(client: Client, site: str, manager: str) -> str:
    """A keyed hash of the id (HMAC with the site's pseudonym key): the audit can answer "was this id
    erased?" to someone who holds the id and the backend, and tells nobody else who it was."""
    key = sites.get_site(client, site).pseudonym_key or sites.get_site(client, site).secret
    return hmac.new(key.encode(), f"manager:{manager}".encode(), hashlib.sha256).hexdigest()[:32]


def _delete(client: Client, table: str, where: str, parameters: dict[str, Any]) -> int:
    found = int(client.command(f"SELECT count() FROM {_name(table)} WHERE {where}", parameters=parameters))
    if found:
        client.command(f"ALTER TABLE {_name(table)} DELETE WHERE {where}", parameters=parameters,
                       settings={"mutations_sync": 2})
    return found


def erase(client: Client, site: str, manager: str, *, actor: str, reason: str,
          spool_dir: Path | None = None) -> Erasure:
    """Remove the person from every table (and the spool) and audit that an erasure happened."""
    person = find_person(client, site, manager)
    result = Erasure(site, subject_hash(client, site, manager))
    if spool_dir is not None:  # first: rows waiting there would be inserted after the tables are clean
        result.spool_rows = erase_from_spool(spool_dir, site, manager)
    p = person.parameters()
    # What points at the person by another id goes first, while the ids can still be found.
    site_is = "site = {site:String} AND "
    result.rows["flag_events"] = _delete(client, "flag_events", site_is + "flag_id IN {flags:Array(UUID)}", p)
    for table in ("coaching_events", "coaching_evaluations"):
        result.rows[table] = _delete(client, table, site_is + "assignment_id IN {assignments:Array(UUID)}", p)
    result.rows["outbox"] = _delete(client, "outbox", site_is + "object IN {assignment_strings:Array(String)}", p)
    result.rows["users"] = _delete(client, "users", "manager_id = {manager:String}", p)
    result.rows["sessions"] = _delete(client, "sessions", "user IN {accounts:Array(String)}", p)
    result.rows["api_tokens"] = _delete(client, "api_tokens", "user IN {accounts:Array(String)}", p)
    for table in tables_with_manager(client):
        result.rows[table] = _delete(client, table, "site = {site:String} AND manager = {manager:String}", p)
    for table in tables_with_manager(client, "managers"):
        # A systemic flag is a finding about a team's step: it stays, without this person in its list.
        found = int(client.command(f"SELECT count() FROM {_name(table)} WHERE site = {{site:String}} "
                                   f"AND has(managers, {{manager:String}})", parameters=p))
        if found:
            client.command(f"ALTER TABLE {_name(table)} UPDATE managers = arrayFilter(m -> m != {{manager:String}}, "
                           f"managers) WHERE site = {{site:String}} AND has(managers, {{manager:String}})",
                           parameters=p, settings={"mutations_sync": 2})
        result.systemic_flags += found
    result.rows["audit_log"] = _delete(
        client, "audit_log", "object = {site_manager:String} OR startsWith(object, {site_manager_slash:String}) "
        "OR object IN {flag_strings:Array(String)} "
        "OR object IN {assignment_strings:Array(String)} OR object IN {accounts:Array(String)}", p)
    result.audit_redacted = _redact_audit(client, person)
    result.messages_redacted = _redact_messages(client, person)
    audit.record(client, actor, "manager.erase", f"{site}/{result.subject}", _scrub(reason, person),
                 {k: v for k, v in result.as_dict().items() if k != "site"})
    return result


def _redact_audit(client: Client, person: Person) -> int:
    """Entries about others (an import, a team's change) that name the person: the id and names go."""
    redacted = 0
    for value in (person.manager, *person.names, *person.accounts):
        needle = {"needle": json.dumps(value), "erased": json.dumps(ERASED)}
        found = int(client.command("SELECT count() FROM audit_log WHERE position(details, {needle:String}) > 0",
                                   parameters=needle))
        if found:
            client.command("ALTER TABLE audit_log UPDATE details = replaceAll(details, {needle:String}, "
                           "{erased:String}) WHERE position(details, {needle:String}) > 0",
                           parameters=needle, settings={"mutations_sync": 2})
        redacted += found
    return redacted


def _redact_messages(client: Client, person: Person) -> int:
    """Digests and notifications about others (a director's weekly digest) that name the person: the id and
    names become "(erased)" wherever they stand as a whole word, so a message still due goes out without them."""
    redacted = 0
    for value in (person.manager, *person.names):
        if not value or "\\E" in value:
            continue
        words = {"pattern": f"(^|[^\\w])\\Q{value}\\E($|[^\\w])", "erased": f"\\1{ERASED}\\2"}
        found = int(client.command("SELECT count() FROM outbox WHERE site = {site:String} "
                                   "AND match(body, {pattern:String})", parameters={**words, "site": person.site}))
        if found:
            client.command("ALTER TABLE outbox UPDATE body = replaceRegexpAll(body, {pattern:String}, {erased:String}) "
                           "WHERE site = {site:String} AND match(body, {pattern:String})",
                           parameters={**words, "site": person.site}, settings={"mutations_sync": 2})
        redacted += found
    return redacted


def _scrub(text: str, person: Person) -> str:
    for value in sorted((person.manager, *person.names, *person.accounts), key=len, reverse=True):
        text = text.replace(value, ERASED)
    return text


# -- the collector's spool ----------------------------------------------------------------------------

SETTLED_S = 2.0  # a spool file untouched this long is closed: the shipper rotates every flush (200 ms)


def erase_from_spool(directory: Path, site: str, manager: str, wait_s: float = 10.0,
                     sleep: Callable[[float], None] = time.sleep) -> int:
    """Rewrite the spool files that hold the person's rows without them; rows removed.

    A file still being appended to is left until it has settled (at most `wait_s`): replacing it
    under the collector would lose what it appends after. A file shipped meanwhile is gone, and
    its rows are in ClickHouse, where `erase` deletes them next."""
    removed = 0
    deadline = time.monotonic() + wait_s
    pending = sorted(directory.glob("spool-*.log")) if directory.is_dir() else []
    while pending:
        later = []
        for path in pending:
            try:
                if time.time() - path.stat().st_mtime < SETTLED_S and time.monotonic() < deadline:
                    later.append(path)
                    continue
                removed += _rewrite(path, site, manager)
            except FileNotFoundError:
                continue  # shipped and removed meanwhile
        pending = later
        if pending:
            sleep(0.5)
    return removed


def _rewrite(path: Path, site: str, manager: str) -> int:
    from collector.spool import Spool

    removed = 0
    out: list[bytes] = []
    for record in Spool.read(path):
        tag = next(t for t, (kind, compact) in SPOOL_TABLES.items()
                   if kind == record.kind and compact == record.compact)
        columns = VISIT_COLUMNS if record.kind == "visits" else SESSION_EVENT_COLUMNS
        kept = []
        for line in record.block.split(b"\n"):
            if not line.strip():
                continue
            row = json.loads(line)
            row_site, row_manager = ((row[columns.index("site")], row[columns.index("manager")]) if record.compact
                                     else (row.get("site"), row.get("manager")))
            if row_site == site and row_manager == manager:
                removed += 1
            else:
                kept.append(line)
        if kept:
            block = b"\n".join(kept)
            out += [tag, b" %d %d\n" % (len(kept), len(block)), block, b"\n"]
    if removed:
        temporary = path.with_suffix(".erasing")
        with open(temporary, "wb") as f:
            f.write(b"".join(out))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    return removed
