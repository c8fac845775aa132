"""Effects that are not luck: each course's and mentor's effect on a step, pooled toward the step's average.

Two assignments that happened to go well say little; nine that went steadily well say much more.
Ranking by the raw average puts the lucky pair first. Partial pooling (empirical Bayes, the
normal-normal model of one-way random effects) takes each course's or mentor's mean effect y_g over
its n_g assignments and moves it toward the step's average mu by the share its noise explains:

    sigma^2  the spread of one assignment's effect around its course's (pooled within-group variance,
             at least the evaluations' own mean squared standard error: each effect is measured with noise)
    tau^2    how much courses truly differ (the method-of-moments estimate on the group means, >= 0)
    B_g      = (sigma^2 / n_g) / (sigma^2 / n_g + tau^2)      how far toward mu
    theta_g  = mu + (1 - B_g) (y_g - mu)                      the pooled effect
    var_g    = (1 - B_g) sigma^2 / n_g + B_g^2 var(mu)        its variance (mu estimated too)

Effects are in log time (log(1 + effect%/100)), as the verdict measures them, and reported back as
% (negative = faster). Pure: no database, no web. docs/coaching.md ("Effects that are not luck").

    rows = pool([Outcome("offer", "course", "offer-basics", "improved", -22.0), ...])
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959964


@dataclass(frozen=True)
class Outcome:
    """One evaluated assignment: on which step, by which course or mentor, its verdict and effect."""

    step: str
    by: str  # "course" or "mentor"
    key: str  # the course id or the mentor's account name
    verdict: str
    effect_pct: float | None  # relative to peers, in %; None: the evaluation had too little data
    standard_error: float | None = None  # of its effect in log time, from the evaluation's interval

    @staticmethod
    def error_of(interval_pct: Sequence[float] | None, level: float = 0.90) -> float | None:
        """The standard error in log time behind an evaluation's interval of the relative effect (in %)."""
        if not interval_pct or len(interval_pct) != 2 or min(interval_pct) <= -100:
            return None
        from scipy import stats

        z = float(stats.norm.ppf(0.5 + level / 2))
        return (math.log1p(interval_pct[1] / 100) - math.log1p(interval_pct[0] / 100)) / (2 * z)


@dataclass(frozen=True)
class Pooled:
    """A course's or mentor's effect on one step, raw and pooled toward the step's average."""

    step: str
    by: str
    key: str
    assignments: int  # evaluated, whatever the verdict
    measured: int  # with an effect (the ones pooled)
    improved: int
    raw_effect_pct: float | None  # mean of its effects (geometric, as log time)
    pooled_effect_pct: float | None  # shrunk toward the step's average
    pooled_ci_pct: tuple[float, float] | None  # 95%
    shrinkage: float | None  # B_g: 0 = its own mean, 1 = the step's average
    step_effect_pct: float | None  # the step's average mu

    def as_dict(self) -> dict[str, object]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def pool(outcomes: Sequence[Outcome]) -> list[Pooled]:
    """Per step, every course and mentor with its pooled effect, best (most negative) first, those
    without a measured effect last."""
    by_step: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_step[o.step].append(o)
    found: list[Pooled] = []
    for step, members in sorted(by_step.items()):
        found.extend(_pool_step(step, members))
    return sorted(found, key=lambda p: (p.step, p.pooled_effect_pct is None, p.pooled_effect_pct or 0.0, p.by, p.key))


@dataclass(frozen=True)
class StepModel:
    """The fitted model of one step: its average, the spread within a course and between courses."""

    mu: float  # log
    mu_variance: float
    sigma2: float  # one assignment around its course's true effect
    tau2: float  # between courses


def fit(groups: Sequence[Sequence[float]], measurement_variance: float = 0.0) -> StepModel | None:
    """The step's model from the log effects of each group; None with fewer than 2 effects in all.
    `measurement_variance`: the mean squared standard error of one effect, a floor for sigma^2."""
    sizes = np.array([len(g) for g in groups if len(g)], dtype=float)
    values = [np.asarray(g, dtype=float) for g in groups if len(g)]
    total = int(sizes.sum()) if sizes.size else 0
    if total < 2:
        return None
    means = np.array([v.mean() for v in values])
    within_df = total - len(values)
    if within_df >= 2:  # pooled within-group variance
        sigma2 = float(sum(((v - v.mean()) ** 2).sum() for v in values) / within_df)
    else:  # too few repeats to see the within spread: take every effect's spread (errs toward pooling)
        every = np.concatenate(values)
        sigma2 = float(every.var(ddof=1))
    sigma2 = max(sigma2, measurement_variance, 1e-9)
    weights = sizes / sigma2
    mu_fixed = float(weights @ means / weights.sum())
    tau2 = 0.0
    if len(values) >= 2:  # DerSimonian-Laird: excess of the group means' spread over their noise
        q = float(weights @ (means - mu_fixed) ** 2)
        scale = float(weights.sum() - (weights ** 2).sum() / weights.sum())
        tau2 = max(0.0, (q - (len(values) - 1)) / scale) if scale > 0 else 0.0
    w = 1.0 / (sigma2 / sizes + tau2)
    mu = float(w @ means / w.sum())
    return StepModel(mu, float(1.0 / w.sum()), sigma2, tau2)


def _pool_step(step: str, members: Sequence[Outcome]) -> list[Pooled]:
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in members:
        groups[(o.by, o.key)].append(o)
    logs = {g: [math.log1p(o.effect_pct / 100) for o in outs if o.effect_pct is not None]
            for g, outs in groups.items()}
    rows = []
    for by in ("course", "mentor"):  # courses are pooled with courses, mentors with mentors
        keys = sorted(g for g in groups if g[0] == by)
        errors = [o.standard_error ** 2 for g in keys for o in groups[g]
                  if o.effect_pct is not None and o.standard_error is not None]
        model = fit([logs[g] for g in keys], float(np.mean(errors)) if errors else 0.0)
        for g in keys:
            outs, effects = groups[g], logs[g]
            raw = float(np.mean(effects)) if effects else None
            pooled = ci = shrink = None
            if model is not None and effects:
                noise = model.sigma2 / len(effects)
                shrink = noise / (noise + model.tau2)
                theta = model.mu + (1 - shrink) * (raw - model.mu)  # type: ignore[operator]
                half = Z95 * math.sqrt((1 - shrink) * noise + shrink ** 2 * model.mu_variance)
                pooled, ci = _pct(theta), (_pct(theta - half), _pct(theta + half))
            elif raw is not None:  # the step's only effect: nothing to pool toward, nothing to claim
                pooled = _pct(raw)
            rows.append(Pooled(step, by, g[1], len(outs), len(effects), sum(o.verdict == "improved" for o in outs),
                               _pct(raw) if raw is not None else None, pooled, ci, shrink,
                               _pct(model.mu) if model is not None else None))
    return rows


def best(pooled: Sequence[Pooled], step: str) -> Pooled | None:
    """The course or mentor with the best pooled effect on `step` that is an improvement (below 0)
    with an interval: what the assign form recommends."""
    fitting = [p for p in pooled if p.step == step and p.pooled_effect_pct is not None and p.pooled_ci_pct
               and p.pooled_effect_pct < 0]
    return min(fitting, key=lambda p: p.pooled_effect_pct) if fitting else None  # type: ignore[arg-type, return-value]


def _pct(log_ratio: float) -> float:
    return math.expm1(log_ratio) * 100.0
