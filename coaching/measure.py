"""Measuring coaching: evaluate an assignment from stored session times, evaluate whatever is due,
and summarise effectiveness per course and per mentor.

This composes the parts: session times from storage (the analysis's pre-aggregate) in the
baseline and the window after (the fortnight that prompted the coaching is in neither), peers from
the teams, bands from their versions, the statistics from coaching/evaluation.py, the state
change through coaching/assignments.py. When the verdict is `improved` and the step's median is
back within the band, the drawdown flag the coaching was assigned from is resolved.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import numpy as np
from clickhouse_connect.driver.client import Client

from analysis.bands import Band, BandVersion, band_in_force
from analysis.flags import ACTIVE as ACTIVE_FLAG_STATUSES
from coaching import _store, assignments, permissions
from coaching._store import StoredEvaluation
from coaching.evaluation import (
    Criteria,
    Effectiveness,
    Evaluation,
    PeerTimes,
    Windows,
    effectiveness,
    evaluate,
    windows,
)
from coaching.lifecycle import SYSTEM_ACTOR, CoachingAssignment, CoachingEvent, InvalidTransition
from coaching.permissions import Account, Operator
from kernel import band_versions, flag_store, sites, storage, teams
from kernel.errors import Conflict
from kernel.settings import Settings

log = logging.getLogger("stepwatch.coaching")


def evaluate_assignment(client: Client, settings: Settings, assignment_id: str, user: Account | None = None, *,
                        now: datetime | None = None, criteria: Criteria | None = None) -> StoredEvaluation:
    """Evaluate a done assignment (or its next follow-up, 30 or 60 days after it was done).

    Refused (InvalidTransition, 409) before the window after the coaching is over, and until the
    analysis has taken in data that arrived after it. `user` None = the automatic evaluation.
    """
    now = _now(now)
    a = assignments.get(client, assignment_id, user)  # what `user` may not see is NotFound, before any refusal
    if user is not None:
        permissions.require(user, "evaluate", a)
    actor: Account = user if user is not None else Operator(SYSTEM_ACTOR)
    checkpoint = a.next_checkpoint()
    if checkpoint is None:
        raise InvalidTransition(_nothing_to_evaluate(a))
    w = windows(a.assigned_on, a.done_on, pre_days=a.pre_days, post_days=a.post_days,  # type: ignore[arg-type]
                checkpoint=checkpoint)
    window = "the window after the coaching" if checkpoint == 0 else f"the {checkpoint}-day follow-up window"
    if now.date() <= w.post.until:
        raise InvalidTransition(f"{window} runs {w.post.since} to {w.post.until}: "
                                f"it can be evaluated from {w.post.until + timedelta(days=1)}")
    storage.refresh_session_steps(client, a.site)
    caught_up = _store.analysed_until(client, a.site)
    window_over = datetime.combine(w.post.until + timedelta(days=1), time(), UTC)
    if caught_up is None or caught_up < window_over:
        seen = _store.iso(caught_up) if caught_up else "nothing yet"
        raise InvalidTransition(f"{window} ends on {w.post.until}, and the session data taken in "
                                f"reaches {seen}: it is evaluated once data that arrived after the window is in")
    result, scope = _measure(client, settings, a, w, criteria or Criteria())
    if checkpoint == 0 and result.target_met and w.post.until > a.deadline:
        result = replace(result, target_met=False, reasons=(*result.reasons, (
            f"the median reached the target, but in the window ending {w.post.until}, after the deadline "
            f"{a.deadline}")))
    band = _band(client, a, w.post.until)
    within_band = band is not None and result.post_median_ms is not None and result.post_median_ms <= band.max_ms
    figures: dict[str, Any] = {**result.figures, "peer_scope": scope, "metric": settings.analysis_metric,
                               "band_max_ms": band.max_ms if band else None, "within_band": within_band}
    payload = {"checkpoint": checkpoint, "verdict": result.verdict, "target_met": result.target_met,
               "relative_effect_pct": result.relative_effect_pct, "post_median_ms": result.post_median_ms}
    event = CoachingEvent(a.assignment_id, a.version + 1, _new_id(), now, actor.name,
                          "evaluated" if checkpoint == 0 else "followed_up", "", payload)
    assignments._append(client, settings, actor, a, event)
    stored = StoredEvaluation(a.site, a.assignment_id, checkpoint, now, w.pre.since, w.pre.until, w.post.since,
                              w.post.until, result.verdict, result.target_met, figures)
    _store.insert_evaluation(client, stored)
    if a.flag_id and result.verdict == "improved" and within_band:
        _resolve_flag(client, a, actor, result.relative_effect_pct, result.post_median_ms, band)  # type: ignore[arg-type]
    return stored


def evaluate_due(client: Client, settings: Settings, now: datetime | None = None) -> list[StoredEvaluation]:
    """Evaluate every assignment whose window after the coaching is over and whose data is in, and
    the 30- and 60-day follow-ups that are due. Run it after each analysis run; a call with
    nothing due costs one small query per site. Returns the evaluations made."""
    now = _now(now)
    made: list[StoredEvaluation] = []
    for site in sites.list_sites(client):
        if not site.enabled:
            continue
        for a in assignments._fold_site(client, site.name).values():
            for _ in range(3):  # a late run catches up: the evaluation, then the follow-ups that are due
                checkpoint = a.next_checkpoint()
                if checkpoint is None or now.date() < a.evaluable_from(checkpoint):  # type: ignore[operator]
                    break
                try:
                    made.append(evaluate_assignment(client, settings, a.assignment_id, now=now))
                except (InvalidTransition, Conflict) as exc:  # data not in yet, or another evaluator won
                    log.info("coaching evaluation of %s deferred: %s", a.assignment_id, exc)
                    break
                a = assignments.get(client, a.assignment_id)
    return made


def evaluations(client: Client, assignment_id: str, user: Account | None = None) -> list[StoredEvaluation]:
    """An assignment's evaluations, checkpoint 0 first, then the follow-ups."""
    a = assignments.get(client, assignment_id, user)
    return _store.evaluations(client, assignment_id=a.assignment_id)


@dataclass(frozen=True)
class EffectivenessRow:
    by: str  # "course" or "mentor"
    key: str  # the course id or the mentor's name
    summary: Effectiveness

    def as_dict(self) -> dict[str, Any]:
        return {"by": self.by, "key": self.key, **{k: (list(v) if isinstance(v, tuple) else v)
                                                   for k, v in self.summary.__dict__.items()}}


def effectiveness_by(client: Client, site: str, user: Account | None = None, *,
                     by: Literal["course", "mentor"] = "course") -> list[EffectivenessRow]:
    """Per course (or per mentor): of their evaluated assignments that `user` may see, the share
    improved and the median effect relative to peers, each with its interval."""
    if by not in ("course", "mentor"):
        raise ValueError(f"by must be course or mentor (got {by!r})")
    if user is not None:
        permissions.require(user, "effectiveness")
    evaluated = assignments.list_assignments(client, site, user, state="evaluated")
    groups: dict[str, list[CoachingAssignment]] = defaultdict(list)
    for a in evaluated:
        key = a.course_id if by == "course" else a.mentor
        if key:
            groups[key].append(a)
    rows = []
    for key, members in sorted(groups.items()):
        latest = [max(a.follow_ups)[1] if a.follow_ups else None for a in members]
        rows.append(EffectivenessRow(by, key, effectiveness([a.verdict or "insufficient_data" for a in members],
                                                            [a.relative_effect_pct for a in members], latest)))
    return rows


@dataclass(frozen=True)
class BeforeAfter:
    """Daily medians of the manager and of their peers around the coaching, for a chart."""

    assignment_id: str
    days: tuple[date, ...]
    manager_ms: tuple[float | None, ...]  # the manager's median that day (None: no session)
    peers_ms: tuple[float | None, ...]  # the peers' median that day
    pre: tuple[date, date]
    post: tuple[date, date] | None  # None until the coaching is done
    target_ms: int
    band_max_ms: int | None
    peers_n: int = 0  # the peers with sessions on the step in these days: whom peers_ms describes
    trigger: tuple[date, date] | None = None  # the fortnight that prompted the coaching: in neither window

    def as_dict(self) -> dict[str, Any]:
        return {"assignment_id": self.assignment_id, "days": [d.isoformat() for d in self.days],
                "manager_ms": list(self.manager_ms), "peers_ms": list(self.peers_ms),
                "pre": [d.isoformat() for d in self.pre],
                "post": [d.isoformat() for d in self.post] if self.post else None,
                "trigger": [d.isoformat() for d in self.trigger] if self.trigger else None,
                "target_ms": self.target_ms, "band_max_ms": self.band_max_ms, "peers_n": self.peers_n}


def before_after(client: Client, settings: Settings, assignment_id: str, user: Account | None = None, *,
                 today: date | None = None) -> BeforeAfter:
    a = assignments.get(client, assignment_id, user)
    today = today or datetime.now(UTC).date()
    done = a.done_on
    w = windows(a.assigned_on, done or a.assigned_on, pre_days=a.pre_days, post_days=a.post_days)
    until = min(today, w.post.until) if done else today
    storage.refresh_session_steps(client, a.site)
    peers = _peer_candidates(client, a, w)
    days = [w.pre.since + timedelta(days=i) for i in range((until - w.pre.since).days + 1)]
    medians = storage.daily_step_medians(client, a.site, a.step, w.pre.since, until + timedelta(days=1), own=a.manager,
                                         others=sorted(peers["team"]), metric=settings.analysis_metric)
    counted = _store.managers_on_step(client, a.site, a.step, w.pre.since, until + timedelta(days=1),
                                      sorted(peers["team"]))
    band = _band(client, a, until)
    return BeforeAfter(a.assignment_id, tuple(days), tuple(medians.get((d, True)) for d in days),
                       tuple(medians.get((d, False)) for d in days), (w.pre.since, w.pre.until),
                       (w.post.since, w.post.until) if done else None, a.target.max_ms,
                       band.max_ms if band else None, counted, (w.trigger.since, w.trigger.until))


# --- internals ---------------------------------------------------------------------------------


def _measure(client: Client, settings: Settings, a: CoachingAssignment, w: Windows,
             criteria: Criteria) -> tuple[Evaluation, str]:
    pairs = storage.session_step_times(client, a.site, w.pre.since, w.post.until + timedelta(days=1),
                                       settings.analysis_metric, step=a.step)
    # manager -> (times before, times after, their days before, their days after): the days let the
    # evaluation allow for sessions of one day moving together
    split: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    pre_since, pre_until = np.datetime64(w.pre.since), np.datetime64(w.pre.until)
    post_since, post_until = np.datetime64(w.post.since), np.datetime64(w.post.until)
    for p in pairs:  # the coached step's pairs only
        before = (p.days >= pre_since) & (p.days <= pre_until)
        after = (p.days >= post_since) & (p.days <= post_until)
        split[p.manager] = (p.times_ms[before], p.times_ms[after], p.days[before], p.days[after])
    empty = np.empty(0)
    own = split.get(a.manager, (empty, empty, empty.astype("datetime64[D]"), empty.astype("datetime64[D]")))
    candidates = _peer_candidates(client, a, w)
    scope = "team"

    def enough(name: str) -> bool:
        return name in split and min(split[name][0].size, split[name][1].size) >= criteria.min_peer_sessions

    chosen = [m for m in candidates["team"] if enough(m)]
    if not chosen:  # a team of one, or nobody else on the step: compare with the rest of the site
        scope = "site"
        chosen = [m for m in candidates["site"] if enough(m)]
    peers = [PeerTimes(m, *split[m]) for m in sorted(chosen)]
    result = evaluate(own[0], own[1], peers, post_days=w.post.days, target_max_ms=a.target.max_ms, criteria=criteria,
                      pre_on=own[2], post_on=own[3])
    return result, scope


def _peer_candidates(client: Client, a: CoachingAssignment, w: Windows) -> dict[str, set[str]]:
    """Managers to compare with: not the coached one, and not coached on this step in these windows.
    'team' = the same team, 'site' = every team."""
    coached = {a.manager}
    for other in assignments._fold_site(client, a.site).values():
        if other.step != a.step or other.assignment_id == a.assignment_id:
            continue
        if other.state == "cancelled" and other.done_at is None:
            continue  # cancelled before any coaching happened
        until = (other.done_on + timedelta(days=other.post_days)) if other.done_on else date.max
        if other.assigned_on <= w.post.until and until >= w.pre.since:
            coached.add(other.manager)
    members = teams.members(client, a.site)
    return {"team": {m for m, t in members.items() if t == a.team and m not in coached},
            "site": {m for m in members if m not in coached}}


def _band(client: Client, a: CoachingAssignment, on: date) -> Band | None:
    versions = [BandVersion(v.effective_from, v.team or None, Band(v.min_ms, v.reference_ms, v.max_ms))
                for v in band_versions.versions(client, a.site, a.step)]
    version = band_in_force(versions, on, a.team or None)
    return version.band if version else None


def _resolve_flag(client: Client, a: CoachingAssignment, actor: Account, effect: float | None, median: float,
                  band: Band) -> None:
    flag = flag_store.get(client, a.flag_id)
    if flag.status not in {s.value for s in ACTIVE_FLAG_STATUSES}:
        return  # resolved or dismissed meanwhile (e.g. by the analysis): nothing to do
    effect_text = f", {effect:+.0f}% relative to peers" if effect is not None else ""
    flag_store.change_status(client, flag, "resolved", actor=actor.name, reason=(
        f"coaching assignment {a.assignment_id} evaluated improved{effect_text}; median {median / 1000:.0f} s is "
        f"within the band (max {band.max_ms / 1000:.0f} s)"))


def _nothing_to_evaluate(a: CoachingAssignment) -> str:
    if a.state in ("assigned", "scheduled"):
        return f"assignment {a.assignment_id} is {a.state}: it is evaluated after it is done"
    if a.state == "cancelled":
        return f"assignment {a.assignment_id} is cancelled"
    return f"assignment {a.assignment_id} is evaluated, with its follow-ups at 30 and 60 days"


def _new_id() -> str:
    return str(uuid.uuid4())


def _now(now: datetime | None) -> datetime:
    return assignments._now(now)
