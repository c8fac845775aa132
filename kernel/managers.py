"""The directory of managers: the name people read for each manager id the tracker reports, per site.

The tracker knows a manager only by the CRM's id (`stepwatch('identify', 'm-011')`); people know
them by name. The directory maps one to the other, so pages show the name, with the id beside it
where someone needs to copy it, and the id alone where no name is known.

It is filled from a CSV (`stepwatch managers import`, columns id,name and optionally team,email),
changed one manager at a time (`stepwatch managers set`, the admin page), versioned like the teams
(a change is a new row with a higher version; `FINAL` gives the current one) and audited
(`manager.set`). Importing the same file again changes nothing.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from kernel import audit, small_tables, teams
from kernel.errors import InvalidInput
from kernel.storage import query_rows

MAX_ID = 128  # as the collector accepts a manager id
MAX_NAME = 200
MAX_EMAIL = 254
COLUMNS = ("id", "name", "team", "email")
REQUIRED = ("id", "name")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Manager:
    site: str
    manager: str  # the id the tracker reports
    name: str
    email: str = ""


@dataclass(frozen=True)
class ManagerRow:
    """One good row of an imported file; team and email None where the file leaves them out."""

    line: int
    manager: str
    name: str
    team: str | None = None
    email: str | None = None


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # managers whose team the file changed
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)

    @property
    def good(self) -> int:
        return len(self.added) + len(self.changed) + len(self.unchanged)

    def as_dict(self) -> dict[str, object]:
        return {"added": self.added, "changed": self.changed, "unchanged": self.unchanged, "moved": self.moved,
                "bad": [{"line": line, "reason": reason} for line, reason in self.bad]}


def _read(client: Client, site: str) -> dict[str, Manager]:
    """Manager id -> the manager's entry, for the managers with one."""
    rows = query_rows(client, "SELECT manager, name, email FROM managers FINAL WHERE site = {site:String} "
                              "ORDER BY manager", {"site": site})
    return {row["manager"]: Manager(site, row["manager"], row["name"], row["email"]) for row in rows}


# Pages read it remembered while the table is unchanged; a change compares with `_read`, the stored now.
directory = small_tables.remembered("managers")(_read)


def names(client: Client, site: str) -> dict[str, str]:
    """Manager id -> name, for the managers with a name."""
    return {m: entry.name for m, entry in directory(client, site).items() if entry.name}


def display(known: dict[str, str], manager: str) -> str:
    """What a person reads for a manager: the name, or the id where no name is known."""
    return known.get(manager) or manager


def check_id(manager: str) -> str:
    manager = manager.strip()
    if not manager:
        raise InvalidInput("Enter the manager's id.", field="manager")
    if len(manager) > MAX_ID or _CONTROL.search(manager):
        raise InvalidInput(f"A manager id is at most {MAX_ID} characters, without control characters.",
                           field="manager")
    return manager


def check_name(name: str) -> str:
    name = " ".join(name.split())  # a name copied with a tab or a double space reads as one
    if not name:
        raise InvalidInput("Enter the manager's name.", field="name")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"A name is at most {MAX_NAME} characters.", field="name")
    return name


def check_email(email: str) -> str:
    email = email.strip()
    if email and (len(email) > MAX_EMAIL or not _EMAIL.match(email)):
        raise InvalidInput("Enter an e-mail address like name@example.com, or leave it empty.", field="email")
    return email


def set_manager(client: Client, site: str, manager: str, *, name: str, email: str | None = None, actor: str,
                reason: str = "") -> tuple[Manager, bool]:
    """Name a manager (email None keeps the one known). Returns the entry and whether it changed."""
    manager, name = check_id(manager), check_name(name)
    email = None if email is None else check_email(email)
    before = _read(client, site).get(manager)
    after = Manager(site, manager, name, before.email if email is None and before else (email or ""))
    if before == after:
        return after, False
    _write(client, [after], [before], actor=actor, reason=reason)
    return after, True


def parse_csv(data: bytes) -> tuple[list[ManagerRow], list[tuple[int, str]]]:
    """The good rows of a CSV file and the bad ones as (line, reason). UTF-8 with or without a BOM;
    comma or semicolon between columns (spreadsheets in Russian write semicolons). A file that cannot
    be read at all (not UTF-8, no id or name column) raises InvalidInput."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"The file is not UTF-8 text (byte {exc.start + 1}); save it as CSV UTF-8.") from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise InvalidInput("The file is empty: its first line names the columns, id,name[,team][,email].")
    header = [h.strip().lower() for h in header]
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if unknown or missing or repeated:
        problems = ([f"unknown column(s) {', '.join(repr(h) for h in unknown)}"] if unknown else []) + \
                   ([f"no column {', '.join(missing)}"] if missing else []) + \
                   ([f"column(s) {', '.join(repeated)} twice"] if repeated else [])
        raise InvalidInput(f"line 1: {'; '.join(problems)}: the columns are id,name and optionally team,email.")
    position = {name: i for i, name in enumerate(header)}
    good: list[ManagerRow] = []
    bad: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            bad.append((reader.line_num, f"unreadable CSV: {exc}"))
            break
        start, line = line + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            bad.append((start, f"{len(cells)} columns where the first line has {len(header)}"))
            continue

        def cell(column: str, cells: list[str] = cells) -> str | None:
            return cells[position[column]] if column in position else None

        try:
            manager = check_id(cell("id") or "")
            name = check_name(cell("name") or "")
            email_cell = cell("email")
            email = check_email(email_cell) or None if email_cell is not None else None
            team = (cell("team") or "").strip() or None
        except InvalidInput as exc:
            bad.append((start, str(exc)))
            continue
        if manager in seen:
            bad.append((start, f"id {manager} is on line {seen[manager]} already"))
            continue
        seen[manager] = start
        good.append(ManagerRow(start, manager, name, team, email))
    return good, bad


def import_rows(client: Client, site: str, rows: Iterable[ManagerRow], *, actor: str, reason: str = "",
                bad: Iterable[tuple[int, str]] = ()) -> ImportResult:
    """Store the rows that differ from the directory (one insert), put managers in the teams the file
    names, audit every change. A row naming a team the site lacks is reported bad and not stored."""
    result = ImportResult(bad=list(bad))
    known_teams = teams.list_teams(client, site)
    current = _read(client, site)
    membership = teams.members(client, site)
    writes: list[Manager] = []
    befores: list[Manager | None] = []
    moves: dict[str, list[str]] = {}
    for row in rows:
        if row.team is not None and row.team not in known_teams:
            result.bad.append((row.line, f"no team {row.team!r} on site {site} (stepwatch teams add {row.team})"))
            continue
        before = current.get(row.manager)
        email = row.email if row.email is not None else (before.email if before else "")
        after = Manager(site, row.manager, row.name, email)
        if before is None:
            result.added.append(row.manager)
        elif before != after:
            result.changed.append(row.manager)
        else:
            result.unchanged.append(row.manager)
        if before != after:
            writes.append(after)
            befores.append(before)
        if row.team is not None and membership.get(row.manager) != row.team:
            moves.setdefault(row.team, []).append(row.manager)
            result.moved.append(row.manager)
    _write(client, writes, befores, actor=actor, reason=reason)
    for team, managers in moves.items():
        teams.assign(client, site, team, managers, actor=actor, reason=reason or "managers import")
    result.bad.sort()
    return result


def _write(client: Client, managers: list[Manager], befores: list[Manager | None], *, actor: str,
           reason: str) -> None:
    if not managers:
        return
    version = time.time_ns()
    client.insert("managers", [[m.site, m.manager, m.name, m.email, version, actor] for m in managers],
                  column_names=["site", "manager", "name", "email", "version", "changed_by"])
    audit.record_many(client, [
        (actor, "manager.set", f"{m.site}/{m.manager}", reason,
         {"name": [b.name if b else "", m.name], "email": [b.email if b else "", m.email]})
        for m, b in zip(managers, befores, strict=True)])
