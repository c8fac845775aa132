"""Paths through the steps: variants, rework, ping-pong and the directly-follows graph.

A service session's path is the order of its visits by `started_at`. Visits of the same step one
after another are one stay (a page reloaded is not a return), so a path never repeats a step twice
in a row. On a path:

    rework      the session comes back to a step it left earlier (A B A: A is reworked)
    ping-pong   A -> B -> A: the session goes to B and straight back to A (A B A B is one pair)
    edge        A -> B: B is the next stay after A (the directly-follows relation of process mining);
                its time is from entering A to entering B

Most functions take *variants*: (path, sessions) pairs, a path counted once per session that took
it, so the same code sums one session, a manager's variants or a whole team's. `summarise` is the
reference from plain visits (used by the tests against the ClickHouse reader in
dashboards/flow_figures.py); the rules for rework minutes and for a manager's deviations from the
team are `rework_cost` and `deviations`, documented in docs/analysis.md#paths-and-rework.

Plain values in, frozen dataclasses out: no database client, no web framework.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import median

Path = tuple[str, ...]
Variants = Iterable[tuple[Sequence[str], int]]

# A manager takes an edge "much more or less often" than their teammates when their rate per session
# is at least DEVIATION_RATIO times the teammates' (or at most 1/DEVIATION_RATIO), the two rates differ
# by at least DEVIATION_MIN_GAP transitions per session, and at least DEVIATION_MIN_COUNT transitions
# were expected or seen: a rare edge taken twice instead of once is not a habit.
DEVIATION_RATIO = 1.5
DEVIATION_MIN_GAP = 0.05
DEVIATION_MIN_COUNT = 5
MINUTE_MS = 60_000


@dataclass(frozen=True)
class Visit:
    """One visit as the `visits` view holds it: the time is the analysis metric's (visible by default)."""

    session: str
    manager: str
    step: str
    started_ms: int
    ms: int


@dataclass(frozen=True)
class SessionPath:
    """One session's stays in order: step, when it was entered (ms since the epoch), time spent (ms)."""

    session: str
    manager: str
    steps: Path
    starts: tuple[int, ...]
    ms: tuple[int, ...]

    @property
    def total_ms(self) -> int:
        return sum(self.ms)


@dataclass(frozen=True)
class Variant:
    path: Path
    sessions: int
    share: float
    median_ms: float | None


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    transitions: int
    median_ms: float | None


@dataclass(frozen=True)
class StepRework:
    """Of the sessions that visited a step, how many came back to it after leaving."""

    step: str
    sessions: int
    reworked: int

    @property
    def rate(self) -> float:
        return self.reworked / self.sessions if self.sessions else 0.0


@dataclass(frozen=True)
class StepCost:
    step: str
    rate: float
    team_rate: float
    sessions: int
    return_ms: float | None
    minutes_per_week: float


@dataclass(frozen=True)
class ReworkCost:
    minutes_per_week: float
    steps: tuple[StepCost, ...]


@dataclass(frozen=True)
class Deviation:
    source: str
    target: str
    direction: str  # "more" or "less"
    own_per_session: float
    team_per_session: float
    own_transitions: int


@dataclass(frozen=True)
class Summary:
    """Everything `summarise` derives from plain visits."""

    sessions: int
    variants: tuple[Variant, ...]
    edges: tuple[Edge, ...]
    rework: tuple[StepRework, ...]
    ping_pong: dict[tuple[str, str], int]
    return_ms: dict[str, float]  # per step, the median time of a return visit


# --- one session ---------------------------------------------------------------------------------------------


def paths_of(visits: Iterable[Visit]) -> list[SessionPath]:
    """Each session's stays in order of `started_at` (ties by step, as the reader orders them)."""
    by_session: dict[tuple[str, str], list[Visit]] = defaultdict(list)
    for v in visits:
        by_session[(v.manager, v.session)].append(v)
    found = []
    for (manager, session), listed in sorted(by_session.items()):
        listed.sort(key=lambda v: (v.started_ms, v.step))
        steps: list[str] = []
        starts: list[int] = []
        ms: list[int] = []
        for v in listed:
            if steps and steps[-1] == v.step:
                ms[-1] += v.ms
                continue
            steps.append(v.step)
            starts.append(v.started_ms)
            ms.append(v.ms)
        found.append(SessionPath(session, manager, tuple(steps), tuple(starts), tuple(ms)))
    return found


def returns(path: Sequence[str]) -> list[bool]:
    """For each stay of a path: is it a return to a step the session left earlier?"""
    seen: set[str] = set()
    found = []
    for step in path:
        found.append(step in seen)
        seen.add(step)
    return found


def reworked(path: Sequence[str]) -> set[str]:
    """The steps a session came back to."""
    return {step for step, back in zip(path, returns(path), strict=True) if back}


def ping_pongs(path: Sequence[str]) -> set[tuple[str, str]]:
    """The (A, B) pairs a path goes A -> B -> A in, each once however often: A B A B is one
    back-and-forth between A and B, named from the step it started on (not also B -> A -> B)."""
    found: dict[frozenset[str], tuple[str, str]] = {}
    for i in range(len(path) - 2):
        if path[i] == path[i + 2]:
            found.setdefault(frozenset((path[i], path[i + 1])), (path[i], path[i + 1]))
    return set(found.values())


# --- many sessions, as variants ------------------------------------------------------------------------------


def rework(variants: Variants) -> dict[str, StepRework]:
    """Per step, the sessions that visited it and those that came back to it."""
    visited: Counter[str] = Counter()
    back: Counter[str] = Counter()
    for path, n in variants:
        for step in set(path):
            visited[step] += n
        for step in reworked(path):
            back[step] += n
    return {step: StepRework(step, visited[step], back[step]) for step in visited}


def ping_pong(variants: Variants) -> dict[tuple[str, str], int]:
    """Per (A, B), the sessions that went A -> B -> A at least once."""
    found: Counter[tuple[str, str]] = Counter()
    for path, n in variants:
        for pair in ping_pongs(path):
            found[pair] += n
    return dict(found)


def edge_counts(variants: Variants) -> dict[tuple[str, str], int]:
    """Per (A, B), how many times a stay on A was followed by one on B."""
    found: Counter[tuple[str, str]] = Counter()
    for path, n in variants:
        for i in range(len(path) - 1):
            found[(path[i], path[i + 1])] += n
    return dict(found)


def rework_cost(own: Mapping[str, StepRework], team: Mapping[str, StepRework], return_ms: Mapping[str, float],
                days: int) -> ReworkCost:
    """What rework costs a manager against their teammates, in minutes per week.

    Per step: (the manager's rework rate - the teammates' rate) x the manager's sessions that visited
    the step x the median time of a return visit to the step, over the weeks of the window (days / 7).
    A step the manager reworks less often than the teammates counts as time saved (negative); the
    total is the sum over the steps. A step no teammate visited has no rate to compare with: left out.
    """
    weeks = max(days, 1) / 7
    costs = []
    for step, mine in own.items():
        theirs = team.get(step)
        if theirs is None or not theirs.sessions or not mine.sessions:
            continue
        typical = return_ms.get(step)
        excess = (mine.rate - theirs.rate) * mine.sessions
        minutes = 0.0 if typical is None else excess * typical / MINUTE_MS / weeks
        costs.append(StepCost(step, mine.rate, theirs.rate, mine.sessions, typical, minutes))
    costs.sort(key=lambda c: -c.minutes_per_week)
    return ReworkCost(sum(c.minutes_per_week for c in costs), tuple(costs))


def deviations(own: Mapping[tuple[str, str], int], own_sessions: int, team: Mapping[tuple[str, str], int],
               team_sessions: int) -> list[Deviation]:
    """The edges a manager takes much more or much less often per session than their teammates
    (`team` counts the teammates' transitions, without the manager's); see DEVIATION_RATIO."""
    if not own_sessions or not team_sessions:
        return []
    found = []
    for edge in sorted(set(own) | set(team)):
        mine, theirs = own.get(edge, 0) / own_sessions, team.get(edge, 0) / team_sessions
        expected = theirs * own_sessions
        if max(own.get(edge, 0), expected) < DEVIATION_MIN_COUNT or abs(mine - theirs) < DEVIATION_MIN_GAP:
            continue
        if mine >= DEVIATION_RATIO * theirs:
            direction = "more"
        elif mine * DEVIATION_RATIO <= theirs:
            direction = "less"
        else:
            continue
        found.append(Deviation(edge[0], edge[1], direction, mine, theirs, own.get(edge, 0)))
    return found


def step_order(process: Sequence[str], seen: Iterable[str]) -> list[str]:
    """The steps to draw, in the process's order; steps the process does not name come last, sorted."""
    seen = set(seen)
    return [s for s in process if s in seen] + sorted(seen - set(process))


# --- the reference, from plain visits ------------------------------------------------------------------------


def summarise(visits: Iterable[Visit]) -> Summary:
    """Variants (most frequent first), edges with their median time, rework per step, ping-pong pairs
    and the median time of a return visit per step, from plain visits."""
    paths = paths_of(visits)
    by_path: dict[Path, list[int]] = defaultdict(list)
    gaps: dict[tuple[str, str], list[int]] = defaultdict(list)
    back_ms: dict[str, list[int]] = defaultdict(list)
    for p in paths:
        by_path[p.steps].append(p.total_ms)
        for i in range(len(p.steps) - 1):
            gaps[(p.steps[i], p.steps[i + 1])].append(p.starts[i + 1] - p.starts[i])
        for step, ms, back in zip(p.steps, p.ms, returns(p.steps), strict=True):
            if back:
                back_ms[step].append(ms)
    total = len(paths)
    variants = sorted((Variant(path, len(times), len(times) / total, float(median(times)))
                       for path, times in by_path.items()), key=lambda v: (-v.sessions, v.path))
    counted = [(v.path, v.sessions) for v in variants]
    return Summary(
        sessions=total,
        variants=tuple(variants),
        edges=tuple(Edge(a, b, len(times), float(median(times))) for (a, b), times in sorted(gaps.items())),
        rework=tuple(sorted(rework(counted).values(), key=lambda r: r.step)),
        ping_pong=ping_pong(counted),
        return_ms={step: float(median(times)) for step, times in back_ms.items()},
    )
