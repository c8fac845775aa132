"""The demo's coaching: a catalog, planted improvements coached and evaluated, flags in coaching."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coaching import assignments, catalog, measure
from kernel import flag_store, storage, users
from kernel.settings import Settings
from stepwatch import analysis_run, demo


@pytest.mark.slow
def test_seed_coaching(client: storage.Client, settings: Settings) -> None:
    today = datetime.now(UTC).date()
    truth = demo.build(client, seed=7, managers=16, days=35, today=today)
    demo.set_bands(client, truth, today, 35)
    analysis_run.analyze(client, settings, only_site=demo.SITE)
    demo.create_accounts(client, truth)
    made = demo.seed_coaching(client, settings, truth, today=today)
    assert demo.seed_coaching(client, settings, truth, today=today) == []  # once
    listed = {a.assignment_id: a for a in assignments.list_assignments(client, demo.SITE)}
    assert set(made) == set(listed)
    improvements = [p for p in truth.planted if p.kind == "improvement"]
    evaluated = [a for a in listed.values() if a.state == "evaluated"]
    assert len(evaluated) == len(improvements) >= 1
    assert {(a.manager, a.step) for a in evaluated} == {(p.manager, p.step) for p in improvements}
    assert all(a.verdict in ("improved", "no_change", "worse", "insufficient_data") for a in evaluated)
    assert all(measure.evaluations(client, a.assignment_id) for a in evaluated)
    meetings = [a for a in listed.values() if a.kind == "mentor_meeting"]
    assert meetings and all(a.mentor == "trainer" and a.flag_id for a in meetings)
    assert {flag_store.get(client, a.flag_id).status for a in meetings} == {"coaching"}
    assert [a.state for a in meetings].count("scheduled") == 1
    own = next(u for u in users.list_users(client) if u.role == "manager")  # the manager account has coaching
    assert any(a.manager == own.manager_id for a in listed.values())
    assert len(catalog.list_courses(client, demo.SITE)) == len(demo.COURSES)
    assert measure.effectiveness_by(client, demo.SITE)
