"""Paths, variants, rework, ping-pong, edges and the rework cost, on fixed inputs (analysis/paths.py)."""

from __future__ import annotations

import pytest

from analysis import paths
from analysis.paths import StepRework, Visit


def visits(session: str, manager: str, *stays: tuple[str, int, int]) -> list[Visit]:
    return [Visit(session, manager, step, start, ms) for step, start, ms in stays]


def test_a_path_is_the_visits_in_order_of_start_with_repeats_in_a_row_merged() -> None:
    found = paths.paths_of([
        *visits("s1", "m1", ("offer", 3000, 50), ("needs", 1000, 100), ("needs", 2000, 30), ("closing", 9000, 5)),
    ])
    assert len(found) == 1
    p = found[0]
    assert p.steps == ("needs", "offer", "closing")
    assert p.starts == (1000, 3000, 9000)
    assert p.ms == (130, 50, 5) and p.total_ms == 185


def test_rework_is_a_return_to_a_step_left_earlier_and_ping_pong_is_a_to_b_to_a() -> None:
    path = ("needs", "offer", "needs", "products", "offer", "needs")
    assert paths.returns(path) == [False, False, True, False, True, True]
    assert paths.reworked(path) == {"needs", "offer"}
    assert paths.ping_pongs(path) == {("needs", "offer")}
    assert paths.ping_pongs(("a", "b", "c")) == set()
    assert paths.ping_pongs(("a", "b", "a", "b", "c", "b")) == {("a", "b"), ("b", "c")}  # a-b-a-b: one pair


def test_variants_sum_by_their_sessions() -> None:
    variants = [(("a", "b", "a", "c"), 3), (("a", "c"), 7), (("b", "c", "b"), 2)]
    found = paths.rework(variants)
    assert found["a"] == StepRework("a", 10, 3)
    assert found["b"] == StepRework("b", 5, 2) and found["b"].rate == pytest.approx(0.4)
    assert found["c"] == StepRework("c", 12, 0)
    assert paths.ping_pong(variants) == {("a", "b"): 3, ("b", "c"): 2}
    assert paths.edge_counts(variants) == {("a", "b"): 3, ("b", "a"): 3, ("a", "c"): 10, ("b", "c"): 2,
                                           ("c", "b"): 2}


def test_summarise_from_visits() -> None:
    found = paths.summarise([
        *visits("s1", "m1", ("a", 0, 10), ("b", 100, 20), ("a", 400, 30)),
        *visits("s2", "m1", ("a", 0, 40), ("b", 300, 20)),
        *visits("s3", "m2", ("a", 0, 20), ("b", 200, 20)),
    ])
    assert found.sessions == 3
    assert [(v.path, v.sessions, v.median_ms) for v in found.variants] == [
        (("a", "b"), 2, 50.0), (("a", "b", "a"), 1, 60.0)]
    assert found.variants[0].share == pytest.approx(2 / 3)
    edges = {(e.source, e.target): (e.transitions, e.median_ms) for e in found.edges}
    assert edges == {("a", "b"): (3, 200.0), ("b", "a"): (1, 300.0)}
    assert found.return_ms == {"a": 30.0}
    assert {r.step: r.rate for r in found.rework} == {"a": pytest.approx(1 / 3), "b": 0.0}
    assert found.ping_pong == {("a", "b"): 1}


def test_rework_cost_is_the_excess_rate_times_sessions_times_a_return_over_the_weeks() -> None:
    own = {"needs": StepRework("needs", 100, 30), "offer": StepRework("offer", 100, 0)}
    team = {"needs": StepRework("needs", 400, 40), "offer": StepRework("offer", 400, 20)}
    cost = paths.rework_cost(own, team, {"needs": 120_000, "offer": 60_000}, days=28)
    by_step = {c.step: c for c in cost.steps}
    # needs: (0.30 - 0.10) x 100 sessions x 2 min / 4 weeks = 10 min a week
    assert by_step["needs"].minutes_per_week == pytest.approx(10.0)
    # offer: (0 - 0.05) x 100 x 1 min / 4 = -1.25: reworked less often than the teammates saves time
    assert by_step["offer"].minutes_per_week == pytest.approx(-1.25)
    assert cost.minutes_per_week == pytest.approx(8.75)
    assert [c.step for c in cost.steps] == ["needs", "offer"]  # the costliest first


def test_rework_cost_leaves_out_a_step_no_teammate_visited() -> None:
    cost = paths.rework_cost({"x": StepRework("x", 10, 5)}, {}, {"x": 60_000}, days=7)
    assert cost.steps == () and cost.minutes_per_week == 0


def test_deviations_are_edges_taken_much_more_or_less_often_per_session() -> None:
    own = {("needs", "offer"): 50, ("offer", "needs"): 30, ("offer", "closing"): 20, ("a", "b"): 2}
    team = {("needs", "offer"): 200, ("offer", "needs"): 20, ("offer", "closing"): 180, ("a", "b"): 1}
    found = {(d.source, d.target): d for d in paths.deviations(own, 50, team, 200)}
    assert found[("offer", "needs")].direction == "more"  # 0.6 a session against 0.1
    assert found[("offer", "closing")].direction == "less"  # 0.4 against 0.9
    assert ("needs", "offer") not in found  # 1.0 against 1.0
    assert ("a", "b") not in found  # too few to call a habit
    assert paths.deviations(own, 0, team, 200) == []


def test_step_order_follows_the_process_then_unknown_steps_sorted() -> None:
    assert paths.step_order(["a", "b", "c"], {"c", "z", "a", "y"}) == ["a", "c", "y", "z"]
