"""Like for like: van Elteren's stratified test against a hand computation, the mix adjustment, and a
manager slow only because of their mix not flagged while a truly slow one still is."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import product

import numpy as np
import pytest
from scipy import special, stats

from analysis.bands import Band
from analysis.flags import PairSessions, Thresholds, assess, pair_from_sessions, pairs_like_for_like
from analysis.stats import Window
from analysis.strata import (
    CaseMix,
    StratifiedRanks,
    StratumShare,
    TeamStrata,
    adjusted_times,
    case_mix,
    stratum_factors,
    stratum_key,
    stratum_values,
    van_elteren_greater_p,
)

BAND = Band(min_ms=100_000, reference_ms=200_000, max_ms=400_000)
WINDOW = Window(date(2025, 3, 15), date(2025, 3, 28))
DAYS = np.array([date(2025, 3, 1) + timedelta(days=i) for i in range(28)], dtype="datetime64[D]")


def test_van_elteren_matches_the_hand_computed_example() -> None:
    # Stratum a: mine 3, 5 against 1, 2, 4: ranks 3 + 5 = 8, expected 2 x 6 / 2 = 6, variance 2 x 3 / 12 x 6 = 3,
    # weight 1/6. Stratum b: mine 10 against 20, 30: rank 1, expected 2, variance 1 x 2 / 12 x 4 = 2/3,
    # weight 1/4. T = 2/6 - 1/4 = 1/12; Var = 3/36 + (2/3)/16 = 1/8; z = (1/12) / sqrt(1/8).
    p = van_elteren_greater_p(np.array([3.0, 5.0, 10.0]), np.array(["a", "a", "b"]),
                              np.array([1.0, 2.0, 4.0, 20.0, 30.0]), np.array(["a", "a", "a", "b", "b"]))
    z = (1 / 12) / np.sqrt(1 / 8)
    assert p == pytest.approx(float(special.ndtr(-z)), rel=1e-12)
    assert p == pytest.approx(0.40683, abs=1e-5)


def test_one_stratum_is_mann_whitney_without_continuity_correction() -> None:
    rng = np.random.default_rng(3)
    mine, peers = np.round(rng.lognormal(5.1, 0.5, 40)), np.round(rng.lognormal(5.0, 0.5, 90))
    mine[:5] = peers[:5]  # ties across the samples
    expected = stats.mannwhitneyu(mine, peers, alternative="greater", method="asymptotic", use_continuity=False)
    got = van_elteren_greater_p(mine, np.full(40, ""), peers, np.full(90, ""))
    assert got == pytest.approx(float(expected.pvalue), rel=1e-10)


def test_van_elteren_with_ties_equals_the_brute_force_sum_over_strata() -> None:
    rng = np.random.default_rng(5)
    mine_t, peers_t = rng.integers(1, 6, 30).astype(float), rng.integers(1, 6, 50).astype(float)
    mine_s, peers_s = rng.choice(["x", "y", "z"], 30), rng.choice(["x", "y", "z"], 50)
    num, var = 0.0, 0.0
    for key in "xyz":
        a, b = mine_t[mine_s == key], peers_t[peers_s == key]
        n1, n2 = a.size, b.size
        n = n1 + n2
        ranks = stats.rankdata(np.concatenate([a, b]))
        _, counts = np.unique(np.concatenate([a, b]), return_counts=True)
        num += (ranks[:n1].sum() - n1 * (n + 1) / 2) / (n + 1)
        var += n1 * n2 / 12 * ((n + 1) - (counts**3 - counts).sum() / (n * (n - 1))) / (n + 1) ** 2
    assert van_elteren_greater_p(mine_t, mine_s, peers_t, peers_s) == pytest.approx(
        float(special.ndtr(-num / np.sqrt(var))), rel=1e-10)


def test_no_shared_stratum_is_no_test() -> None:
    assert van_elteren_greater_p(np.array([1.0, 2.0]), np.array(["a", "a"]),
                                 np.array([3.0]), np.array(["b"])) is None


def test_stratum_keys_follow_the_declared_order() -> None:
    assert stratum_key({"channel": "phone", "segment": "vip"}, ["segment", "channel"]) == "vip|phone"
    assert stratum_key({"channel": "phone"}, ["segment", "channel"]) == "|phone"
    assert stratum_key({}, ["segment"]) == ""
    assert stratum_values("|phone", ["segment", "channel"]) == {"channel": "phone"}
    assert stratum_values("", ["segment"]) == {}


def test_factors_from_the_team_or_from_a_stratum_band() -> None:
    times = np.array([100.0] * 30 + [160.0] * 10 + [50.0] * 3)
    strata = np.array(["regular"] * 30 + ["vip"] * 10 + ["rare"] * 3)
    factors = stratum_factors(times, strata, BAND, min_sessions=10)
    assert factors == {"regular": 1.0, "vip": 1.6, "rare": 1.0}  # rare: 3 sessions, too few to adjust by
    own = {"vip": Band(100_000, 300_000, 600_000)}
    assert stratum_factors(times, strata, BAND, stratum_bands=own, min_sessions=10)["vip"] == 1.5
    assert adjusted_times(np.array([160.0, 100.0]), np.array(["vip", "regular"]), factors).tolist() == [100.0, 100.0]


def test_case_mix_names_the_stratum_that_lengthens_the_median() -> None:
    mix = case_mix(np.array([160.0, 160.0, 100.0, 100.0]), np.array([100.0, 100.0, 100.0, 100.0]),
                   ["regular", "vip"], np.array([2, 2]), np.array([9, 1]), [1.0, 1.6], reference_ms=100.0,
                   window_days=7)
    assert mix.main_difference == StratumShare("vip", 2, 0.5, 0.1, 1.6)
    assert mix.median_ms == 130.0 and mix.adjusted_median_ms == 100.0
    assert mix.minutes_above_reference_per_week == pytest.approx(30 * 4 / 60_000)
    assert mix.adjusted_minutes_above_reference_per_week == 0.0
    same = CaseMix((StratumShare("vip", 1, 0.1, 0.1, 1.6),), 1.0, 1.0, 0.0, 0.0)
    assert same.main_difference is None


def _session_times(rng: np.random.Generator, share_vip: float, skill: float, n_per_day: int = 3
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    days = np.repeat(DAYS, n_per_day)
    vip = rng.random(days.size) < share_vip
    times = np.round(200_000 * skill * np.where(vip, 1.6, 1.0) * np.exp(rng.normal(0, 0.25, days.size)))
    order = np.lexsort((times, days))
    return times[order], days[order], np.where(vip, "vip", "regular")[order].astype(object)


def _team(share_of: dict[str, float], skill_of: dict[str, float], seed: int = 1) -> list[PairSessions]:
    rng = np.random.default_rng(seed)
    out = []
    for manager in share_of:
        times, days, strata = _session_times(rng, share_of[manager], skill_of.get(manager, 1.0))
        out.append(PairSessions("north", manager, "needs", BAND, times, days, strata))
    return out


SHARES = {"m-mix": 0.7, **{f"m-{i}": 0.1 for i in range(6)}}


def test_a_manager_slow_only_because_of_the_mix_is_flagged_without_strata_and_not_with() -> None:
    sessions = _team(SHARES, {})
    plain = [pair_from_sessions(team=s.team, manager=s.manager, step=s.step, band=s.band, durations_ms=s.durations_ms,
                                days=s.days, window=WINDOW) for s in sessions]
    unadjusted = {a.manager: a for a in assess(plain, Thresholds(), WINDOW).assessments}
    assert unadjusted["m-mix"].status == "slow"

    result = assess(pairs_like_for_like(sessions, WINDOW), Thresholds(), WINDOW)
    mine = next(a for a in result.assessments if a.manager == "m-mix")
    assert mine.status == "ok"
    assert not result.drawdowns
    mix = mine.case_mix
    assert mix is not None and mix.method == "van_elteren"
    main = mix.main_difference
    assert main is not None and main.stratum == "vip" and main.manager_share > 0.5 and main.team_share < 0.2
    assert mix.minutes_above_reference_per_week > 3 * mix.adjusted_minutes_above_reference_per_week


def test_a_truly_slow_manager_is_still_flagged_with_strata() -> None:
    result = assess(pairs_like_for_like(_team(SHARES, {"m-0": 1.35}), WINDOW), Thresholds(), WINDOW)
    slow = {a.manager for a in result.assessments if a.status == "slow"}
    assert slow == {"m-0"}
    assert [d.manager for d in result.drawdowns] == ["m-0"]


def test_one_stratum_builds_the_same_pairs_as_without_strata() -> None:
    sessions = _team({m: 0.0 for m in SHARES}, {"m-0": 1.35})
    plain = [pair_from_sessions(team=s.team, manager=s.manager, step=s.step, band=s.band, durations_ms=s.durations_ms,
                                days=s.days, window=WINDOW) for s in sessions]
    like = pairs_like_for_like(sessions, WINDOW)
    for a, b in zip(assess(plain, Thresholds(), WINDOW).assessments, assess(like, Thresholds(), WINDOW).assessments,
                    strict=True):
        assert (a.status, a.p_value, a.q_value, a.summary, a.case_mix) == (b.status, b.p_value, b.q_value, b.summary,
                                                                           None)


@pytest.mark.parametrize(("share", "skill"), list(product([0.1, 0.7], [1.0])))
def test_the_stratified_p_value_of_a_pool_member_matches_the_function(share: float, skill: float) -> None:
    sessions = _team({**SHARES, "m-mix": share}, {})
    pairs = pairs_like_for_like(sessions, WINDOW)
    result = assess(pairs, Thresholds(), WINDOW)
    i = next(k for k, p in enumerate(pairs) if p.manager == "m-mix")
    others = [p for k, p in enumerate(pairs) if k != i]
    expected = van_elteren_greater_p(pairs[i].peer_ms, pairs[i].strata,
                                     np.concatenate([p.peer_ms for p in others]),
                                     np.concatenate([p.strata for p in others]))
    assert result.assessments[i].p_value == pytest.approx(expected, rel=1e-10)


def test_a_slow_manager_who_serves_most_of_a_kind_is_not_excused_by_it() -> None:
    # m-0 serves 80% VIP and is 35% slower with every client; the others serve 10%. Factors from the
    # whole team would be pulled up by m-0's own slow VIP sessions (1.86 x here) and excuse part of it.
    sessions = _team({**{m: 0.1 for m in SHARES}, "m-0": 0.8}, {"m-0": 1.35}, seed=4)
    result = assess(pairs_like_for_like(sessions, WINDOW, min_stratum_sessions=10), Thresholds(), WINDOW)
    mine = next(a for a in result.assessments if a.manager == "m-0")
    assert mine.status == "slow" and mine.case_mix is not None
    vip = next(s for s in mine.case_mix.strata if s.stratum == "vip")
    assert vip.factor == pytest.approx(1.6, rel=0.08)  # the others' VIP sessions
    assert mine.case_mix.adjusted_median_ms == pytest.approx(1.35 * 200_000, rel=0.1)


def test_the_main_difference_is_a_slower_kind_served_more() -> None:
    # VIP could not be scaled (factor 1: too few team sessions); regular is a little faster and served less
    mix = CaseMix((StratumShare("vip", 28, 0.67, 0.12, 1.0), StratumShare("regular", 14, 0.33, 0.88, 0.94)),
                  300_000.0, 300_000.0, 71.0, 71.0)
    assert mix.main_difference is None


def test_the_factors_of_a_manager_are_those_of_the_rest_of_the_team() -> None:
    rng = np.random.default_rng(2)
    times = np.round(rng.lognormal(12, 0.4, 300))
    codes = rng.integers(0, 3, 300)
    owners = rng.integers(0, 5, 300)
    team = TeamStrata(times, codes, owners, 4)  # code 3: no session at all
    own = {2: Band(100_000, 300_000, 600_000)}
    for manager in range(5):
        rest = owners != manager
        expected = stratum_factors(times[rest], codes[rest], BAND, stratum_bands=own, min_sessions=20)
        got = team.factors_without(manager, BAND, own, 20)
        assert got.tolist() == pytest.approx([expected.get(c, 1.0) for c in range(4)], rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_the_factors_without_each_manager_match_a_count_over_the_rest_with_ties_and_empty_strata(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    times = np.round(rng.lognormal(5, 0.3, n))  # coarse: many ties
    codes = rng.integers(0, 4, n)
    owners = rng.integers(0, 9, n)
    owners[owners == 4] = 5  # manager 4 has no session at all
    team = TeamStrata(times, codes, owners, 5)  # code 4: no session at all
    for manager in range(11):  # 9 and 10: beyond every owner
        rest = owners != manager
        expected = stratum_factors(times[rest], codes[rest], BAND, min_sessions=7)
        got = team.factors_without(manager, BAND, {}, 7)
        assert got.tolist() == pytest.approx([expected.get(c, 1.0) for c in range(5)], rel=1e-12)


def test_a_rare_combination_of_attributes_takes_the_product_of_its_values_factors() -> None:
    # VIP takes 1.6 times as long whatever the channel; VIP by e-mail is too rare to scale by itself,
    # so it is scaled by VIP's factor (and e-mail's, which is about 1), not left unscaled
    rng = np.random.default_rng(3)
    keys = ["regular|phone"] * 200 + ["vip|phone"] * 60 + ["regular|email"] * 100 + ["vip|email"] * 5
    slow = np.array([1.6 if k.startswith("vip") else 1.0 for k in keys])
    times = 100_000 * slow * np.exp(rng.normal(0, 0.05, len(keys)))
    factors = stratum_factors(times, np.array(keys), BAND, min_sessions=20)
    vip = factors["vip|phone"]
    assert vip == pytest.approx(1.6 * factors["regular|phone"], rel=0.05)
    assert factors["vip|email"] > 1.3 and factors["vip|email"] == pytest.approx(vip, rel=0.15)
    # the same from the rest of the team, owner by owner
    codes_of = {k: i for i, k in enumerate(sorted(set(keys)))}
    codes = np.array([codes_of[k] for k in keys])
    owners = np.arange(len(keys)) % 4
    team = TeamStrata(times, codes, owners, len(codes_of), sorted(codes_of))
    for owner in range(4):
        rest = owners != owner
        expected = stratum_factors(times[rest], np.array(keys)[rest], BAND, min_sessions=20)
        got = team.factors_without(owner, BAND, {}, 20)
        for key, code in codes_of.items():
            assert got[code] == pytest.approx(expected[key], rel=1e-9), key


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sessions_outside_a_pool_get_the_p_value_of_the_function(seed: int) -> None:
    # times rounded to whole seconds: many ties within and across the two sets; the outside
    # sessions also have a stratum the pool has none of (it counts in no comparison)
    rng = np.random.default_rng(seed)
    pool_t = np.round(rng.lognormal(5, 0.5, 400))
    pool_s = rng.choice(np.array(["", "vip", "web"]), 400)
    own_t = np.round(rng.lognormal(5.1, 0.5, 60))
    own_s = rng.choice(np.array(["", "vip", "phone"]), 60)
    keys, codes = np.unique(pool_s, return_inverse=True)
    ranked = StratifiedRanks(pool_t, codes, keys.size)
    at = np.searchsorted(keys, own_s).clip(max=keys.size - 1)
    own_codes = np.where(keys[at] == own_s, at, -1)
    assert ranked.p_greater_than_all(own_t, own_codes) == pytest.approx(
        van_elteren_greater_p(own_t, own_s, pool_t, pool_s), rel=1e-12)
    assert ranked.p_greater_than_all(own_t, np.full(60, -1)) is None  # no stratum shared
