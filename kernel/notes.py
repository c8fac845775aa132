"""Context notes: a manager's own words next to their figures ("trained a new colleague", "CRM outage").

A note is on a week of a step (`week`, its Monday) or on one of the manager's flags (`flag_id`, with
the flag's step). Only the manager a note is about writes it, from My figures, and only they withdraw
it; whoever may see that manager's figures (dashboards/access.py) reads it next to them: the director
on the drawdown and manager pages, where a note can also be the reason a flag is dismissed.

Versioned like the directory of managers (a change is a new row with a higher version, `FINAL` gives
the current one; a withdrawn note keeps its row with `deleted`) and audited (`note.add`,
`note.withdraw`). The checks here are the domain's; who may write is the caller's (the page checks
the account is the manager's own).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from clickhouse_connect.driver.client import Client

from kernel import audit
from kernel.errors import InvalidInput, NotFound
from kernel.storage import query_rows

MAX_TEXT = 500  # a note explains a week in a sentence or two; longer belongs in a conversation
MAX_WEEKS_BACK = 53  # a note on a week older than a year explains figures no page shows any more
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # a line break is allowed, other control characters not


@dataclass(frozen=True)
class Note:
    site: str
    note_id: str
    manager: str
    step: str
    week: date | None  # the Monday of the week noted; None for a note on a flag
    flag_id: str  # "" for a note on a week
    text: str
    author: str
    created_at: datetime
    deleted: bool = False
    version: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"note_id": self.note_id, "manager": self.manager, "step": self.step, "week": self.week,
                "flag_id": self.flag_id or None, "text": self.text, "author": self.author,
                "created_at": self.created_at}


def check_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise InvalidInput("Write the note: what happened that week or on this flag.", field="text")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"A note is at most {MAX_TEXT} characters; this one has {len(text)}.", field="text")
    if _CONTROL.search(text):
        raise InvalidInput("A note may not hold control characters.", field="text")
    return text


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def check_week(day: date, today: date | None = None) -> date:
    """The Monday of the week `day` falls in, if that week has begun and is at most a year back."""
    today = today or datetime.now(UTC).date()
    week = monday_of(day)
    if week > today:
        raise InvalidInput("That week has not begun yet: a note is on a week that has figures.", field="week")
    if week < monday_of(today) - timedelta(weeks=MAX_WEEKS_BACK):
        raise InvalidInput(f"That week is more than {MAX_WEEKS_BACK} weeks back.", field="week")
    return week


def add_note(client: Client, site: str, manager: str, *, step: str, text: str, actor: str,
             week: date | None = None, flag_id: str = "", today: date | None = None) -> Note:
    """Store a note on a week of a step (`week`, any day of it) or on a flag (`flag_id`), and audit it."""
    if (week is None) == (not flag_id):
        raise InvalidInput("A note is on a week or on a flag: give one of them.", field="week")
    if not step:
        raise InvalidInput("Choose the step the note is on.", field="step")
    note = Note(site, str(uuid.uuid4()), manager, step, None if week is None else check_week(week, today),
                flag_id, check_text(text), actor, _now_ms(), False, time.time_ns())
    _write(client, note)
    audit.record(client, actor, "note.add", f"{site}/{manager}/{note.note_id}", "",
                 {"step": step, "week": note.week, "flag_id": flag_id, "text": note.text})
    return note


def withdraw(client: Client, site: str, manager: str, note_id: str, *, actor: str) -> Note:
    """Withdraw one of `manager`'s notes (it stays in the audit log); NotFound if they have no such note."""
    note = next((n for n in _read(client, site, [manager]) if n.note_id == note_id), None)
    if note is None:
        raise NotFound(f"no note {note_id} of yours")
    gone = replace(note, deleted=True, version=time.time_ns())
    _write(client, gone)
    audit.record(client, actor, "note.withdraw", f"{site}/{manager}/{note_id}", "", {"step": note.step})
    return gone


def notes_of(client: Client, site: str, managers: Iterable[str], *, step: str | None = None) -> list[Note]:
    """The current notes about these managers (on one step, if given), oldest week first, newest written
    first within a week; notes on flags after the notes on weeks."""
    found = [n for n in _read(client, site, list(managers)) if step is None or n.step == step]
    return sorted(found, key=lambda n: (n.week is None, n.week or date.min, -n.created_at.timestamp()))


def _read(client: Client, site: str, managers: list[str]) -> list[Note]:
    if not managers:
        return []
    rows = query_rows(client, "SELECT site, note_id, manager, step, week, flag_id, text, author, created_at, "
                              "deleted, version FROM notes FINAL WHERE site = {site:String} "
                              "AND manager IN {managers:Array(String)} AND NOT deleted",
                      {"site": site, "managers": managers})
    return [Note(**{**row, "created_at": row["created_at"].replace(tzinfo=UTC)
                    if row["created_at"].tzinfo is None else row["created_at"]}) for row in rows]


def _now_ms() -> datetime:
    now = datetime.now(UTC)  # as stored: DateTime64(3)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _write(client: Client, note: Note) -> None:
    client.insert("notes", [[note.site, note.note_id, note.manager, note.step, note.week, note.flag_id, note.text,
                             note.author, note.created_at, note.deleted, note.version]],
                  column_names=["site", "note_id", "manager", "step", "week", "flag_id", "text", "author",
                                "created_at", "deleted", "version"])
