"""The coaching statistics on hand-made data: figures against numpy and scipy, the verdict rules,
difference-in-differences against a seasonal shift, windows, effectiveness."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pytest
from scipy import stats
from scipy.stats import mstats

from coaching.evaluation import Criteria, PeerTimes, effectiveness, evaluate, windows

if TYPE_CHECKING:
    from kernel import sites, storage
    from kernel.settings import Settings


def lognormal(seed: int, n: int, median_s: float, sigma: float = 0.4) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median_s * 1000), sigma, n)


def peers(factor: float, count: int = 5, n: int = 60) -> list[PeerTimes]:
    return [PeerTimes(f"p{i}", lognormal(100 + i, n, 240), lognormal(200 + i, n, 240 * factor)) for i in range(count)]


def test_figures_match_numpy_and_scipy() -> None:
    pre = np.array([300, 320, 250, 410, 380, 290, 305, 330, 600, 275, 310, 295, 350, 360, 280, 340, 300, 315, 325,
                    290], dtype=float) * 1000
    post = np.array([250, 240, 260, 300, 230, 245, 270, 255, 500, 235, 265, 250, 240, 280, 260, 225, 245, 255, 238,
                     262, 248], dtype=float) * 1000
    result = evaluate(pre, post, peers(1.0), post_days=14)
    assert result.pre_n == 20 and result.post_n == 21
    assert result.pre_median_ms == np.median(pre) and result.post_median_ms == np.median(post)
    assert result.change_pct == pytest.approx((np.median(post) / np.median(pre) - 1) * 100)
    assert result.median_diff_ms == pytest.approx(np.median(post) - np.median(pre))
    assert result.p_value == pytest.approx(stats.mannwhitneyu(post, pre, alternative="less").pvalue)
    per_week = 21 * 7 / 14
    assert result.minutes_saved_per_week == pytest.approx((np.median(pre) - np.median(post)) * per_week / 60_000)
    low, high = result.median_diff_ci_ms  # type: ignore[misc]
    assert low <= result.median_diff_ms <= high < 0
    assert result.verdict == "improved"
    assert evaluate(pre, post, peers(1.0), post_days=14) == result  # seeded: the same figures every time


def test_exact_relative_effect_when_the_manager_is_scaled_and_the_peers_are_not() -> None:
    pre = lognormal(1, 50, 300)
    steady = [PeerTimes(f"p{i}", lognormal(10 + i, 40, 250), lognormal(10 + i, 40, 250)) for i in range(4)]
    result = evaluate(pre, pre * 0.8, steady, post_days=14)
    assert result.relative_effect_pct == pytest.approx(-20.0)  # log-time trimmed means move by exactly log 0.8
    assert result.peers_change_pct == pytest.approx(0.0)
    low, high = result.relative_effect_ci_pct  # type: ignore[misc]
    assert low < -20 < high < 0
    assert result.relative_effect_p < 0.05 and result.verdict == "improved"  # type: ignore[operator]


def test_a_seasonal_speed_up_of_everyone_is_not_credited() -> None:
    pre, post = lognormal(1, 60, 300), lognormal(2, 60, 300 * 0.8)
    alone = evaluate(pre, post, peers(1.0), post_days=14)
    assert alone.verdict == "improved"
    seasonal = evaluate(pre, post, peers(0.8), post_days=14)  # the whole team got 20% faster
    assert alone.p_value == seasonal.p_value < 0.05  # the manager's own time fell as much ...
    assert seasonal.verdict == "no_change"  # ... but so did everyone's
    assert seasonal.relative_effect_ci_pct[0] < 0 < seasonal.relative_effect_ci_pct[1]  # type: ignore[index]
    assert "peers got faster as much" in seasonal.reasons[0]


def test_gaining_on_peers_who_slowed_down_is_credited_and_said_so() -> None:
    # The verdict is the difference in differences: had the manager followed the peers, they would
    # have slowed down by 30% too. The reason says that their own time did not fall.
    pre, post = lognormal(1, 60, 300), lognormal(2, 60, 300)
    result = evaluate(pre, post, peers(1.3), post_days=14)
    assert result.p_value > 0.05  # type: ignore[operator]  # no fall of their own ...
    assert result.relative_effect_pct < 0 and result.relative_effect_p < 0.05  # type: ignore[operator]
    assert result.verdict == "improved"  # ... but the peers' 30% slowdown did not happen to them
    assert "own time did not fall" in result.reasons[0]


TRIM = Criteria().trim  # the verdict's trimmed mean cuts this share from each end


def _yuen_by_hand(times: np.ndarray, trim: float = TRIM) -> tuple[float, float]:
    """Trimmed mean of log time and Yuen's variance of it, from scipy's trim_mean and winsorize."""
    logs = np.log(times)
    n, kept = logs.size, logs.size - 2 * int(trim * logs.size)
    winsorised = np.asarray(mstats.winsorize(logs, limits=(trim, trim)))
    return float(stats.trim_mean(logs, trim)), float(np.var(winsorised, ddof=1) * (n - 1) / (kept * (kept - 1)))


def test_the_verdicts_test_by_hand() -> None:
    pre, post = lognormal(1, 47, 300), lognormal(2, 53, 260)
    group = [PeerTimes(f"p{i}", lognormal(30 + i, 20 + 15 * i, 240), lognormal(40 + i, 30 + 10 * i, 230))
             for i in range(4)]
    result = evaluate(pre, post, group, post_days=14)
    own_pre, own_post = _yuen_by_hand(pre), _yuen_by_hand(post)
    own = own_post[0] - own_pre[0]
    # the manager's part is Yuen's trimmed two-sample statistic, as scipy computes it
    yuen_t = stats.ttest_ind(np.log(post), np.log(pre), equal_var=False, trim=TRIM).statistic
    assert own / np.sqrt(own_pre[1] + own_post[1]) == pytest.approx(yuen_t)
    changes, variances, windows_ = [], [], []
    for p in group:
        a, b = _yuen_by_hand(p.pre_ms), _yuen_by_hand(p.post_ms)
        changes.append(b[0] - a[0])
        variances.append(a[1] + b[1])
        windows_.append(((a[1], p.pre_ms.size), (b[1], p.post_ms.size)))
    weights = (1 / np.array(variances)) / np.sum(1 / np.array(variances))  # precision-weighted peers
    did = own - weights @ changes
    variance = own_pre[1] + own_post[1] + weights ** 2 @ variances
    se = np.sqrt(variance)
    # Welch-Satterthwaite: each window's variance has (sessions kept - 1) degrees of freedom
    parts = [(own_pre[1], pre.size), (own_post[1], post.size)]
    parts += [(w * w * v, n) for w, pair in zip(weights, windows_, strict=True) for v, n in pair]
    df = variance ** 2 / sum(v * v / (n - 2 * int(TRIM * n) - 1) for v, n in parts)
    assert 50 < df < 160
    assert result.relative_effect_pct == pytest.approx((np.exp(did) - 1) * 100)
    assert result.relative_effect_p == pytest.approx(stats.t.cdf(did / se, df))
    z = stats.t.ppf(0.95, df)
    assert result.relative_effect_ci_pct == pytest.approx(((np.exp(did - z * se) - 1) * 100,
                                                           (np.exp(did + z * se) - 1) * 100))
    assert result.design_effect is None  # no days given: sessions taken as independent


@pytest.mark.parametrize("factor", [0.70, 0.80, 0.85, 0.90, 0.95, 1.0, 1.1, 1.2, 1.3])
@pytest.mark.parametrize("peer_factor", [0.8, 1.0, 1.25])
def test_the_decision_rests_on_the_one_test_alone(factor: float, peer_factor: float) -> None:
    pre, post = lognormal(1, 45, 300), lognormal(2, 45, 300 * factor)
    result = evaluate(pre, post, peers(peer_factor, n=30), post_days=14)
    p, (low, high) = result.relative_effect_p, result.relative_effect_ci_pct  # type: ignore[misc]
    expected = "improved" if p < 0.05 else "worse" if 1 - p < 0.05 else "no_change"  # type: ignore[operator]
    assert result.verdict == expected  # whatever the Mann-Whitney p says (result.p_value): the grid has
    # Mann-Whitney p < 0.05 with no_change (peers 0.8) and p > 0.05 with improved (peers 1.25)
    assert (high < 0) == (result.verdict == "improved") and (low > 0) == (result.verdict == "worse")


def _with_bad_days(seed: int, n: int, median_s: float, day_sd: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 10, n)
    day_effect = rng.normal(0, day_sd, 10)
    return np.exp(np.log(median_s * 1000) + day_effect[days] + rng.normal(0, 0.3, n)), days


def _dated_assignment(day_sd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[PeerTimes]]:
    """A manager 20% faster after the coaching and 4 unchanged peers, 8 sessions a day on 10 days per
    window (the post windows' days numbered from 100), days as slow or fast as `day_sd` says."""
    pre, pre_on = _with_bad_days(1, 80, 300, day_sd)
    post, post_on = _with_bad_days(2, 80, 240, day_sd)
    group = []
    for i in range(4):
        a, a_on = _with_bad_days(10 + i, 60, 240, day_sd)
        b, b_on = _with_bad_days(20 + i, 60, 240, day_sd)
        group.append(PeerTimes(f"p{i}", a, b, a_on, b_on + 100))
    return pre, pre_on, post, post_on + 100, group


def test_sessions_sharing_a_day_widen_the_interval() -> None:
    pre, pre_on, post, post_on, group = _dated_assignment(0.25)
    dated = evaluate(pre, post, group, post_days=14, pre_on=pre_on, post_on=post_on)
    undated = evaluate(pre, post, [PeerTimes(p.manager, p.pre_ms, p.post_ms) for p in group], post_days=14)
    assert dated.relative_effect_pct == pytest.approx(undated.relative_effect_pct)  # the same estimate ...
    assert dated.design_effect > 2  # type: ignore[operator]  # ... 8 sessions a day, strongly tied
    assert dated.relative_effect_p > undated.relative_effect_p  # type: ignore[operator]  # ... less certain
    width = [r.relative_effect_ci_pct[1] - r.relative_effect_ci_pct[0] for r in (dated, undated)]  # type: ignore[index]
    assert width[0] > 1.3 * width[1]
    assert "design effect" in dated.reasons[2]
    days = np.array(["2026-03-02", "2026-03-03"] * 40, dtype="datetime64[D]")  # dates work as well as numbers
    as_dates = evaluate(pre, post, group, post_days=14, pre_on=days, post_on=days)
    assert as_dates.design_effect is not None
    with pytest.raises(ValueError, match="79 session days for 80"):
        evaluate(pre, post, group, post_days=14, pre_on=pre_on[1:], post_on=post_on)


def test_no_day_effect_leaves_the_variance_alone() -> None:
    pre, pre_on, post, post_on, group = _dated_assignment(0.0)
    result = evaluate(pre, post, group, post_days=14, pre_on=pre_on, post_on=post_on)
    assert 0.7 < result.design_effect < 1.3  # type: ignore[operator]  # near 1 without day effects, either side


def test_worse() -> None:
    result = evaluate(lognormal(1, 60, 300), lognormal(2, 60, 420), peers(1.0), post_days=14)
    assert result.verdict == "worse" and result.minutes_saved_per_week < 0  # type: ignore[operator]


def test_no_change() -> None:
    result = evaluate(lognormal(1, 60, 300), lognormal(2, 60, 300), peers(1.0), post_days=14)
    assert result.verdict == "no_change"


@pytest.mark.parametrize(("pre_n", "post_n", "peer_n", "reason"), [
    (19, 60, 60, "19 sessions before"),
    (60, 5, 60, "5 sessions after"),
    (60, 60, 9, "no peer with at least 10 sessions"),
])
def test_insufficient_data(pre_n: int, post_n: int, peer_n: int, reason: str) -> None:
    result = evaluate(lognormal(1, pre_n, 300), lognormal(2, post_n, 200), peers(1.0, n=peer_n), post_days=14,
                      target_max_ms=250_000)
    assert result.verdict == "insufficient_data"
    assert any(reason in r for r in result.reasons)
    assert result.relative_effect_pct is None


def test_target_met_on_the_post_median() -> None:
    pre, post = lognormal(1, 60, 300), lognormal(2, 60, 230)
    median = float(np.median(post))
    assert evaluate(pre, post, peers(1.0), post_days=14, target_max_ms=int(median) + 1).target_met is True
    assert evaluate(pre, post, peers(1.0), post_days=14, target_max_ms=int(median) - 1).target_met is False
    assert evaluate(pre, post, peers(1.0), post_days=14).target_met is None


def test_zero_time_sessions_are_allowed_and_negative_ones_refused() -> None:
    pre = np.r_[lognormal(1, 40, 300), [0.0]]
    assert evaluate(pre, lognormal(2, 40, 250), peers(1.0), post_days=14).verdict in ("improved", "no_change")
    with pytest.raises(ValueError, match="0 or more"):
        evaluate(-pre, pre, post_days=14)


def test_windows_leave_the_coaching_days_and_the_trigger_fortnight_out() -> None:
    w = windows(date(2026, 3, 10), date(2026, 3, 13))
    assert (w.trigger.since, w.trigger.until) == (date(2026, 2, 24), date(2026, 3, 9))  # the 14 days that prompted it
    assert (w.pre.since, w.pre.until) == (date(2026, 1, 27), date(2026, 2, 23))  # the 28 days before them
    assert (w.post.since, w.post.until) == (date(2026, 3, 14), date(2026, 3, 27))
    follow = windows(date(2026, 3, 10), date(2026, 3, 13), checkpoint=30)
    assert (follow.post.since, follow.post.until) == (date(2026, 3, 30), date(2026, 4, 12))
    assert follow.pre == w.pre and follow.trigger == w.trigger
    short = windows(date(2026, 3, 10), date(2026, 3, 10), pre_days=7, post_days=7)
    assert short.pre.days == 7 and short.pre.until == date(2026, 2, 23)
    with pytest.raises(ValueError):
        windows(date(2026, 3, 10), date(2026, 3, 9))
    with pytest.raises(ValueError):
        windows(date(2026, 3, 10), date(2026, 3, 12), checkpoint=45)


def _fortnight(seed: int, n: int, median_s: float, first_day: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.exp(np.log(median_s * 1000) + rng.normal(0, 0.4, n)), rng.integers(first_day, first_day + 10, n)


def test_the_end_of_a_bad_streak_is_not_credited_to_the_coaching() -> None:
    # Regression to the mean: a manager at 300 s for a month has a bad fortnight at 400 s, is coached,
    # and is back at 300 s after. Their peers stay at 250 s throughout. Against the fortnight that
    # prompted the coaching the manager looks 25% faster; against their baseline, unchanged.
    baseline, baseline_on = _fortnight(1, 120, 300, 0)
    baseline_on = baseline_on * 2  # 20 working days
    streak, streak_on = _fortnight(2, 60, 400, 20)
    post, post_on = _fortnight(3, 60, 300, 40)
    group = []
    for i in range(5):
        base, base_on = _fortnight(10 + i, 90, 250, 0)
        bad, bad_on = _fortnight(20 + i, 45, 250, 20)
        after, after_on = _fortnight(30 + i, 45, 250, 40)
        group.append((PeerTimes(f"p{i}", base, after, base_on * 2, after_on),
                      PeerTimes(f"p{i}", bad, after, bad_on, after_on)))
    fair = evaluate(baseline, post, [g[0] for g in group], post_days=14, pre_on=baseline_on, post_on=post_on)
    assert fair.verdict == "no_change"
    assert abs(fair.relative_effect_pct) < 8  # type: ignore[arg-type]
    against_streak = evaluate(streak, post, [g[1] for g in group], post_days=14, pre_on=streak_on, post_on=post_on)
    assert against_streak.verdict == "improved" and against_streak.relative_effect_pct < -20  # type: ignore[operator]
    # the windows a stored assignment is measured on put that fortnight in neither
    w = windows(date(2026, 3, 10), date(2026, 3, 13))
    assert w.trigger.since > w.pre.until and w.trigger.until < date(2026, 3, 10) < w.post.since


def test_a_day_everyone_shares_is_no_uncertainty_of_the_verdict() -> None:
    # The whole team has busy and quiet days (sd 0.25 in log time), nobody has days of their own:
    # the comparison with the peers cancels what everyone shares, so the design effect stays near 1.
    rng = np.random.default_rng(7)
    team_day = rng.normal(0, 0.25, 20)

    def person(seed: int, n: int, first_day: int, median_s: float) -> tuple[np.ndarray, np.ndarray]:
        r = np.random.default_rng(seed)
        days = r.integers(first_day, first_day + 10, n)
        return np.exp(np.log(median_s * 1000) + team_day[days] + r.normal(0, 0.3, n)), days

    pre, pre_on = person(1, 80, 0, 300)
    post, post_on = person(2, 80, 10, 240)
    group = [PeerTimes(f"p{i}", *person(10 + i, 60, 0, 240)[:1], *person(20 + i, 60, 10, 240)[:1],
                       person(10 + i, 60, 0, 240)[1], person(20 + i, 60, 10, 240)[1]) for i in range(5)]
    shared = evaluate(pre, post, group, post_days=14, pre_on=pre_on, post_on=post_on)
    assert shared.design_effect < 1.3  # type: ignore[operator]
    # the same spread of days, but each person's own: their sessions of a day move together, alone
    pre2, pre_on2, post2, post_on2, own_group = _dated_assignment(0.25)
    own = evaluate(pre2, post2, own_group, post_days=14, pre_on=pre_on2, post_on=post_on2)
    assert own.design_effect > 2  # type: ignore[operator]


def _paired_days(seed: int, days: range, median_s: float) -> tuple[np.ndarray, np.ndarray]:
    """4 sessions a day, in pairs that balance each other within the day (a long call, then a short
    one): the day's sessions move against each other, so their day sums vary less than chance."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0, 0.3, (len(days), 2))
    logs = np.log(median_s * 1000) + np.concatenate([offsets, -offsets], axis=1) + rng.normal(0, 0.02, (len(days), 4))
    return np.exp(logs.ravel()), np.repeat(np.array(days), 4)


def test_a_design_effect_below_one_is_used_as_estimated() -> None:
    # Sessions of a day that balance each other: the design effect comes out below 1 and the interval
    # narrower than for independent sessions. Held at 1 or more, every estimate's noise would lean
    # the variance up (about 6% in the benchmark, where there are few days of one's own).
    pre, pre_on = _paired_days(1, range(0, 20), 300)
    post, post_on = _paired_days(2, range(100, 110), 240)
    group = [PeerTimes(f"p{i}", *_paired_days(10 + i, range(0, 20), 240)[:1],
                       *_paired_days(20 + i, range(100, 110), 240)[:1],
                       _paired_days(10 + i, range(0, 20), 240)[1], _paired_days(20 + i, range(100, 110), 240)[1])
             for i in range(4)]
    dated = evaluate(pre, post, group, post_days=14, pre_on=pre_on, post_on=post_on)
    undated = evaluate(pre, post, [PeerTimes(p.manager, p.pre_ms, p.post_ms) for p in group], post_days=14)
    assert dated.design_effect is not None and dated.design_effect < 1
    from coaching.evaluation import LOWEST_DESIGN_EFFECT
    assert dated.design_effect == LOWEST_DESIGN_EFFECT == 0.95  # an estimate far below 1 is taken at the floor
    width = [r.relative_effect_ci_pct[1] - r.relative_effect_ci_pct[0] for r in (dated, undated)]  # type: ignore[index]
    assert width[0] < 0.99 * width[1]  # the floor's square root (0.975) and the t's fewer degrees of freedom


def test_the_design_effects_own_noise_lowers_the_degrees_of_freedom() -> None:
    from coaching.evaluation import _day_design_effect, _difference_in_differences, _Window

    pre, pre_on, post, post_on, group = _dated_assignment(0.1)
    wins = [(_Window(pre, pre_on), _Window(post, post_on)),
            *[(_Window(p.pre_ms, p.pre_on), _Window(p.post_ms, p.post_on)) for p in group]]
    dated = _difference_in_differences(wins[0][0], wins[0][1], wins[1:], TRIM)
    undated = _difference_in_differences(_Window(pre, None), _Window(post, None),
                                         [(_Window(a.times, None), _Window(b.times, None)) for a, b in wins[1:]], TRIM)
    deff, deff_variance = _day_design_effect([w for pair in wins for w in pair], TRIM)
    assert deff == dated.design_effect and deff_variance > 0
    assert dated.df < undated.df  # the variance has two estimated parts now: the sessions' and the days'
    # Var(V d) ~ d^2 Var(V) + V^2 Var(d), Var(V) = 2 V^2 / df: with V the undated variance and no shared days
    variance = undated.se ** 2
    total = dated.se ** 2
    expected = 2 * total ** 2 / (variance ** 2 * (2 * deff ** 2 / undated.df + deff_variance))
    assert dated.df == pytest.approx(expected, rel=1e-9)


def _null_assignment(rng: np.random.Generator, own_day_sd: float) -> tuple[object, ...]:
    """A manager and 5 peers, 4-8 sessions a day over 20 days before and 10 after, each person with
    days of their own (sd `own_day_sd` in log time) and a team day everyone shares; nothing changes."""
    from coaching.evaluation import _Window

    team = rng.normal(0, 0.05, 30)

    def window(first: int, days: int, per_day: int) -> _Window:
        own = rng.normal(0, own_day_sd, days)
        on = rng.integers(0, days, per_day * days)
        logs = np.log(200_000) + own[on] + team[first + on] + rng.normal(0, 0.4, on.size)
        return _Window(np.exp(logs), first + on)

    people = [int(rng.integers(4, 9)) for _ in range(6)]
    pairs = [(window(0, 20, n), window(20, 10, n)) for n in people]
    return pairs[0][0], pairs[0][1], pairs[1:]


def test_the_verdict_keeps_its_five_percent_with_days_of_ones_own() -> None:
    # 600 assignments with nothing planted and strong days of one's own (sd 0.15 against a session's
    # 0.4: a design effect near 1.6): the verdict says `improved` about one time in twenty; the same
    # test blind to the days, about one in ten. MC standard error of a 600-draw rate at 5%: 0.009.
    from coaching.evaluation import _difference_in_differences, _Window

    rng = np.random.default_rng(12)
    dated = blind = 0
    for _ in range(600):
        pre, post, group = _null_assignment(rng, 0.15)
        d = _difference_in_differences(pre, post, group, TRIM)  # type: ignore[arg-type]
        dated += stats.t.cdf(d.estimate / d.se, d.df) < 0.05
        b = _difference_in_differences(_Window(pre.times, None), _Window(post.times, None),  # type: ignore[attr-defined]
                                       [(_Window(x.times, None), _Window(y.times, None)) for x, y in group], TRIM)  # type: ignore[attr-defined]
        blind += stats.t.cdf(b.estimate / b.se, b.df) < 0.05
    assert dated / 600 <= 0.05 + 2.5 * 0.009
    assert blind / 600 > 0.08


def test_effectiveness_share_and_median_with_intervals() -> None:
    verdicts = ["improved"] * 6 + ["no_change"] * 3 + ["worse", "insufficient_data"]
    effects = [-25.0, -20.0, -18.0, -30.0, -15.0, -22.0, -3.0, 2.0, -5.0, 12.0, None]
    summary = effectiveness(verdicts, effects, ["improved", None, "no_change", None, None, None] + [None] * 5)
    assert (summary.assignments, summary.conclusive, summary.improved) == (11, 10, 6)
    assert summary.share_improved == pytest.approx(0.6)
    low, high = summary.share_improved_ci  # type: ignore[misc]
    assert 0.3 < low < 0.6 < high < 0.9  # Wilson interval for 6 of 10: 0.31 to 0.83
    assert summary.median_effect_pct == pytest.approx(float(np.median([e for e in effects if e is not None])))
    assert summary.median_effect_ci_pct == (-25.0, 2.0)  # order statistics 2 and 9 of the 10 sorted
    assert (summary.followed_up, summary.lasted) == (2, 1)
    few = effectiveness(["improved"] * 3, [-20.0, -10.0, -15.0])
    assert few.median_effect_ci_pct is None  # 5 or fewer effects cannot pin a median at 95%
    assert effectiveness([], []).share_improved is None


def test_criteria_are_checked() -> None:
    with pytest.raises(ValueError, match="alpha"):
        Criteria(alpha=0.7)


def test_standard_error_from_counts_and_spreads_is_the_verdicts() -> None:
    from coaching.evaluation import Volume, _difference_in_differences, _Window, _yuen, standard_error

    def spread(times: np.ndarray) -> float:
        return float(np.std(_yuen(times, TRIM)[2], ddof=1))

    # one spread per person: the manager's and each peer's windows have the same winsorised spread
    # when the after window is the before one scaled (log shift leaves the deviations alone)
    pre = lognormal(1, 57, 300)
    group = [(lognormal(10 + i, 30 + 10 * i, 240), 1.1) for i in range(4)]
    did = _difference_in_differences(_Window(pre, None), _Window(pre * 0.8, None),
                                     [(_Window(a, None), _Window(a * f, None)) for a, f in group], TRIM)
    se = standard_error(Volume(57, 57, spread(pre)), [Volume(a.size, a.size, spread(a)) for a, _ in group])
    assert se == pytest.approx(did.se)
    assert standard_error(Volume(57, 57, spread(pre)), [Volume(a.size, a.size, spread(a)) for a, _ in group],
                          design_effect=1.44) == pytest.approx(did.se * 1.2)
    assert standard_error(Volume(57, 57, 0.5), []) is None  # no peer: insufficient data
    assert standard_error(Volume(1, 57, 0.5), [Volume(30, 30, 0.5)]) is None  # 1 session: no variance
    # four times the sessions everywhere: half the standard error, near enough (n-1 / h(h-1) ~ 1/n)
    quarter = standard_error(Volume(240, 240, 0.5), [Volume(240, 240, 0.5)] * 4)
    assert quarter == pytest.approx(standard_error(Volume(60, 60, 0.5), [Volume(60, 60, 0.5)] * 4) / 2, rel=0.03)


def _team_days(seed: int, days: int, sd: float) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, sd, days)


def _on_days(seed: int, n: int, median_s: float, shared: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    on = rng.choice(days, n)
    return np.exp(np.log(median_s * 1000) + shared[on] + rng.normal(0, 0.3, n)), on


def test_the_variance_of_a_day_everyone_shares_is_recovered() -> None:
    from coaching.evaluation import _shared_day_variance, _Window

    shared = _team_days(3, 60, 0.3)
    people = [_Window(*_on_days(i, 900, 240, shared, np.arange(60))) for i in range(8)]
    assert 0.05 < _shared_day_variance(people, 0.1) < 0.14  # 0.3^2 = 0.09; 60 days of it
    alone = [_Window(*_on_days(i, 900, 240, np.zeros(60), np.arange(60))) for i in range(8)]
    assert _shared_day_variance(alone, 0.1) < 0.005


def test_a_manager_on_other_days_than_the_peers_keeps_the_shared_days_uncertainty() -> None:
    # Busy and quiet team days (sd 0.3). The peers work every day; the manager only on two days of
    # each window: those two days' luck is in the manager's change and not in the peers'.
    shared = _team_days(4, 20, 0.3)
    pre, pre_on = _on_days(1, 60, 300, shared, np.array([0, 1]))
    post, post_on = _on_days(2, 60, 300, shared, np.array([10, 11]))
    group = []
    for i in range(6):
        a, a_on = _on_days(10 + i, 60, 240, shared, np.arange(10))
        b, b_on = _on_days(20 + i, 60, 240, shared, np.arange(10, 20))
        group.append(PeerTimes(f"p{i}", a, b, a_on, b_on))
    dated = evaluate(pre, post, group, post_days=14, pre_on=pre_on, post_on=post_on)
    undated = evaluate(pre, post, [PeerTimes(p.manager, p.pre_ms, p.post_ms) for p in group], post_days=14)
    width = [r.relative_effect_ci_pct[1] - r.relative_effect_ci_pct[0] for r in (dated, undated)]  # type: ignore[index]
    assert width[0] > 2 * width[1]  # two days a window: the day's luck weighs like sd 0.3 / sqrt(2) per window
    # the same manager on every day, as the peers: nearly all of it cancels
    spread_pre, spread_pre_on = _on_days(1, 60, 300, shared, np.arange(10))
    spread_post, spread_post_on = _on_days(2, 60, 300, shared, np.arange(10, 20))
    even = evaluate(spread_pre, spread_post, group, post_days=14, pre_on=spread_pre_on, post_on=spread_post_on)
    assert even.relative_effect_ci_pct[1] - even.relative_effect_ci_pct[0] < 1.3 * width[1]  # type: ignore[index]


def test_a_stored_assignment_after_a_bad_fortnight_is_measured_against_the_usual_time(
        client: storage.Client, settings: Settings, site: sites.Site) -> None:
    # m-1 works at 300 s, has a bad fortnight at 420 s just before the assignment, is coached and
    # is back at 300 s. The peers stay at 250 s. The evaluation stored for the assignment compares
    # the window after with the four weeks before that fortnight: no_change, not improved.
    from datetime import timedelta

    from coaching import assignments, measure
    from coaching.lifecycle import Target
    from tests.coaching_helpers import add_sessions, at, build_org, today

    org = build_org(client, site.name)
    assigned, done = today() - timedelta(days=30), today() - timedelta(days=26)
    trigger = assigned - timedelta(days=14)
    add_sessions(client, org.site, "m-1", assigned - timedelta(days=60), trigger - timedelta(days=1), 300, seed=1)
    add_sessions(client, org.site, "m-1", trigger, assigned - timedelta(days=1), 420, seed=2)
    add_sessions(client, org.site, "m-1", assigned, today() - timedelta(days=1), 300, seed=3)
    for i, peer in enumerate(["m-2", "m-3", "m-4"]):
        add_sessions(client, org.site, peer, assigned - timedelta(days=60), today() - timedelta(days=1), 250,
                     seed=10 + i)
    a = assignments.assign(client, settings, org.dana, site=org.site, manager="m-1", step="offer", kind="course",
                           course_id="offer-basics", due=assigned + timedelta(days=7),
                           target=Target(max_ms=240_000, within_days=30), now=at(assigned))
    assignments.mark_done(client, settings, org.max, a.assignment_id, now=at(done))
    evaluation = measure.evaluate_assignment(client, settings, a.assignment_id, org.dana)
    assert evaluation.pre_until == trigger - timedelta(days=1)  # the bad fortnight is not the baseline
    assert evaluation.pre_since == trigger - timedelta(days=28)
    assert evaluation.verdict == "no_change"
    assert abs(evaluation.figures["relative_effect_pct"]) < 8
    chart = measure.before_after(client, settings, a.assignment_id, org.dana)  # the chart can mark that fortnight
    assert chart.pre == (evaluation.pre_since, evaluation.pre_until)
    assert chart.trigger == (trigger, assigned - timedelta(days=1))
    assert chart.as_dict()["trigger"] == [trigger.isoformat(), (assigned - timedelta(days=1)).isoformat()]
