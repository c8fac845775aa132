"""What the assign form's plan reads: the sessions of the manager's team only (an eighth of a site's,
which on a cluster all travel to the node asked), and the site's managers only when the team has
nobody to compare with; the figures are those of the same managers' sessions read with the site's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from dashboards.pages import coaching as coaching_page
from kernel import storage
from kernel.settings import Settings
from tests.coaching_helpers import NORTH, SOUTH, add_sessions, build_org, today
from tests.test_analysis_preaggregate import DAY, TODAY, history  # noqa: F401  (the fixture)


def test_a_read_for_some_managers_gives_their_pairs_as_the_sites_read_does(history: storage.Client) -> None:  # noqa: F811
    since = DAY - timedelta(days=10)
    every = {(p.manager, p.step): p for p in storage.session_step_times(history, "crm", since, TODAY)}
    ana = storage.session_step_times(history, "crm", since, TODAY, managers=["ana"])
    assert {p.manager for p in ana} == {"ana"} and len(ana) == len([k for k in every if k[0] == "ana"])
    for pair in ana:
        assert np.array_equal(pair.times_ms, every[(pair.manager, pair.step)].times_ms)
        assert np.array_equal(pair.days, every[(pair.manager, pair.step)].days)
    assert storage.session_step_times(history, "crm", since, TODAY, managers=[]) == []


def test_a_days_times_per_row_give_the_sessions_of_each_day(history: storage.Client) -> None:  # noqa: F811
    """pair_day_times (what the plan reads) gives each manager's sessions on a step as session_step_times
    does, a session past midnight counted on each of its days instead of summed."""
    since = DAY - timedelta(days=10)
    steps = {p.step for p in storage.session_step_times(history, "crm", since, TODAY)}
    for step in sorted(steps):
        every = {p.manager: p for p in storage.session_step_times(history, "crm", since, TODAY, step=step)}
        by_day = {p.manager: p for p in storage.pair_day_times(history, "crm", since, TODAY, step=step,
                                                               managers=sorted(every))}
        assert set(by_day) == set(every)
        for manager, pair in by_day.items():
            assert pair.step == step and pair.times_ms.sum() == every[manager].times_ms.sum()
            assert np.all((pair.days[1:] > pair.days[:-1]) | ((pair.days[1:] == pair.days[:-1])
                                                              & (pair.times_ms[1:] >= pair.times_ms[:-1])))
            if pair.times_ms.size == every[manager].times_ms.size:  # no session past midnight
                assert np.array_equal(pair.times_ms, every[manager].times_ms)
                assert np.array_equal(pair.days, every[manager].days)
    assert storage.pair_day_times(history, "crm", since, TODAY, step="offer", managers=[]) == []


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str] | None]:
    """The managers each pair_day_times call of the page asked for."""
    asked: list[list[str] | None] = []
    real = storage.pair_day_times

    def recorded(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("managers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(storage, "pair_day_times", recorded)
    return asked


def sessions(client: storage.Client, site: str, who: dict[str, float]) -> None:
    first, last = today() - timedelta(days=28), today() - timedelta(days=1)
    for i, (manager, median_s) in enumerate(who.items()):
        add_sessions(client, site, manager, first, last, median_s, per_day=4, sigma=0.5, seed=i)


def test_the_plan_reads_the_teams_sessions_only(client: storage.Client, site: Any, settings: Settings,
                                                reads: list[list[str] | None]) -> None:
    org = build_org(client, site.name)
    sessions(client, org.site, {"m-1": 300, "m-2": 260, "m-3": 270, "s-1": 250, "s-2": 240})
    plan = coaching_page.plan_for(client, settings, org.site, "m-1", "offer", 180_000, 28, 14)
    assert reads == [sorted(NORTH)]
    assert plan is not None and plan["peer_scope"] == "team" and plan["peers"] == 2 and plan["sessions_seen"] == 80


def test_with_nobody_in_the_team_to_compare_the_plan_reads_the_sites_managers(
        client: storage.Client, site: Any, settings: Settings, reads: list[list[str] | None]) -> None:
    org = build_org(client, site.name)
    sessions(client, org.site, {"m-1": 300, "m-2": 260, "s-1": 250})  # s-2 has no sessions
    plan = coaching_page.plan_for(client, settings, org.site, "s-1", "offer", 180_000, 28, 14)
    assert reads == [sorted(SOUTH), sorted(NORTH + SOUTH)]
    assert plan is not None and plan["peer_scope"] == "site" and plan["peers"] == 2
