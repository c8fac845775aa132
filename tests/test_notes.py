"""Context notes in the kernel: stored on a week (its Monday) or a flag, checked, withdrawn, audited."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from kernel import audit, notes, storage
from kernel.errors import InvalidInput, NotFound

TODAY = date(2026, 12, 4)  # a Friday


def test_a_note_on_any_day_of_a_week_is_on_its_monday_and_audited(client: storage.Client) -> None:
    note = notes.add_note(client, "crm", "m-1", step="offer", week=date(2026, 11, 26), text="  CRM outage ",
                          actor="max", today=TODAY)
    assert note.week == date(2026, 11, 23) and note.text == "CRM outage"
    [found] = notes.notes_of(client, "crm", ["m-1"])
    assert found == note
    [entry] = audit.entries(client, action="note.")
    assert (entry.actor, entry.action, entry.object) == ("max", "note.add", f"crm/m-1/{note.note_id}")
    assert entry.details["text"] == "CRM outage" and entry.details["week"] == "2026-11-23"


def test_notes_are_read_per_manager_and_step(client: storage.Client) -> None:
    notes.add_note(client, "crm", "m-1", step="offer", week=TODAY, text="a", actor="max", today=TODAY)
    notes.add_note(client, "crm", "m-1", step="needs", flag_id="f-1", text="b", actor="max", today=TODAY)
    notes.add_note(client, "crm", "m-2", step="offer", week=TODAY, text="c", actor="mia", today=TODAY)
    notes.add_note(client, "other", "m-1", step="offer", week=TODAY, text="d", actor="max", today=TODAY)
    assert [n.text for n in notes.notes_of(client, "crm", ["m-1"])] == ["a", "b"]  # weeks, then flags
    assert [n.text for n in notes.notes_of(client, "crm", ["m-1", "m-2"], step="offer")] == ["c", "a"]  # newest first
    assert notes.notes_of(client, "crm", []) == []


def test_a_withdrawn_note_is_gone_from_pages_and_kept_in_the_audit_log(client: storage.Client) -> None:
    note = notes.add_note(client, "crm", "m-1", step="offer", week=TODAY, text="typo", actor="max", today=TODAY)
    notes.withdraw(client, "crm", "m-1", note.note_id, actor="max")
    assert notes.notes_of(client, "crm", ["m-1"]) == []
    assert [e.action for e in audit.entries(client, action="note.")] == ["note.withdraw", "note.add"]
    with pytest.raises(NotFound):
        notes.withdraw(client, "crm", "m-1", note.note_id, actor="max")


def test_someone_elses_note_cannot_be_withdrawn(client: storage.Client) -> None:
    note = notes.add_note(client, "crm", "m-2", step="offer", week=TODAY, text="mine", actor="mia", today=TODAY)
    with pytest.raises(NotFound):
        notes.withdraw(client, "crm", "m-1", note.note_id, actor="max")
    assert [n.text for n in notes.notes_of(client, "crm", ["m-2"])] == ["mine"]


@pytest.mark.parametrize(("fields", "field"), [
    ({"week": TODAY, "text": ""}, "text"),
    ({"week": TODAY, "text": "x" * (notes.MAX_TEXT + 1)}, "text"),
    ({"week": TODAY, "text": "bell\x07"}, "text"),
    ({"week": TODAY + timedelta(days=7), "text": "future"}, "week"),
    ({"week": TODAY - timedelta(weeks=60), "text": "ancient"}, "week"),
    ({"text": "neither week nor flag"}, "week"),
    ({"week": TODAY, "flag_id": "f-1", "text": "both"}, "week"),
])
def test_bad_input_names_the_field(client: storage.Client, fields: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        notes.add_note(client, "crm", "m-1", step="offer", actor="max", today=TODAY, **fields)
    assert raised.value.field == field
    assert notes.notes_of(client, "crm", ["m-1"]) == [] and audit.entries(client, action="note.") == []


def test_a_note_may_run_over_lines(client: storage.Client) -> None:
    note = notes.add_note(client, "crm", "m-1", step="offer", week=TODAY, text="line one\nline two", actor="max",
                          today=TODAY)
    assert note.text == "line one\nline two"
