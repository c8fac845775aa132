"""Process definitions: the ordered steps of serving a client on one site, and how to recognise them.

A definition is written in TOML (see examples/sales_desk.toml), loaded with
`stepwatch process load FILE --site SITE` or changed step by step in the process page's editor
(edit_step, remove_step, save_edit), stored in ClickHouse as a new version when it changed (with
who and why, in the audit log), and served to the tracker by the collector at
`GET /v1/config/{site_key}`. The analysis adds time bands per step to the same steps.
test_url() says which step an address counts as, or why none, matching as the tracker does.

URL patterns match a path segment by segment: a literal segment matches itself, `*` matches any
one segment, `{customer}` any one segment and captures it as the customer reference, any other
`{name}` any one segment, kept in the sanitized path as `:name`.

A definition may declare the few attributes the CRM attaches to a service session, each with its
allowed values (`[attributes]`, e.g. `segment = ["vip", "regular"]`): short lowercase keys, at most
4 attributes of at most 20 values, never free text. The tracker drops anything else, the collector
refuses it, and the analysis compares sessions of the same attributes with each other (case mix).
Optional `[attribute_titles]` (name -> title) and `[value_titles.NAME]` (value -> title) give the
words people read instead of the keys.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from kernel import audit, small_tables
from kernel.errors import InvalidInput, NotFound
from kernel.storage import query_rows

KEY = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
SEGMENT = re.compile(r"^(\*|\{[a-z_][a-z0-9_]{0,31}\}|[A-Za-z0-9_.~\-]+)$")
ATTRIBUTE_KEY = re.compile(r"^[a-z0-9_\-]{1,32}$")
MAX_ATTRIBUTES = 4
MAX_ATTRIBUTE_VALUES = 20


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class TrackerOptions:
    idle_ms: int = 30_000
    checkpoint_ms: int = 15_000
    session_timeout_ms: int = 30 * 60_000


@dataclass(frozen=True)
class Process:
    site: str
    key: str
    title: str
    steps: tuple[Step, ...]
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    attribute_titles: dict[str, str] = field(default_factory=dict)
    value_titles: dict[str, dict[str, str]] = field(default_factory=dict)
    version: int = 0
    loaded_at: datetime | None = None
    loaded_by: str = ""

    def step(self, key: str) -> Step:
        for step in self.steps:
            if step.key == key:
                return step
        raise NotFound(f"process {self.key} of site {self.site} has no step {key!r}")

    def attribute_title(self, name: str) -> str:
        return self.attribute_titles.get(name, name)

    def value_title(self, name: str, value: str) -> str:
        return self.value_titles.get(name, {}).get(value, value)

    def attribute_problem(self, attributes: Any) -> str | None:
        """Why a session's attributes are not allowed by this definition (naming the field), or None."""
        return attribute_problem(self.attributes, attributes)

    def definition(self) -> dict[str, Any]:
        """What is versioned: everything but the version's own bookkeeping."""
        out: dict[str, Any] = {
            "process": self.key,
            "title": self.title,
            "tracker": asdict(self.tracker),
            "steps": [{"key": s.key, "title": s.title, "patterns": list(s.patterns)} for s in self.steps],
        }
        # Only when declared, so a definition without attributes is versioned as before.
        if self.attributes:
            out["attributes"] = {name: list(values) for name, values in self.attributes.items()}
        if self.attribute_titles:
            out["attribute_titles"] = dict(self.attribute_titles)
        if self.value_titles:
            out["value_titles"] = {name: dict(titles) for name, titles in self.value_titles.items()}
        return out

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.definition())


def attribute_problem(declared: dict[str, tuple[str, ...]], attributes: Any) -> str | None:
    """Why a session's attributes are not among the `declared` names and values (naming the field), or None."""
    if not isinstance(attributes, dict):
        return "attributes: must be an object of declared names and values"
    for name, value in attributes.items():
        allowed = declared.get(name)
        if allowed is None:
            shown = name if isinstance(name, str) and ATTRIBUTE_KEY.match(name) else "?"
            return f"attributes.{shown}: not declared by the process" + (
                f" (declared: {', '.join(declared)})" if declared else " (it declares none)")
        if not isinstance(value, str) or value not in allowed:
            return f"attributes.{name}: the value is not one of {', '.join(allowed)}"
    return None


def parse(text: str, site: str) -> Process:
    """Read a TOML definition; InvalidInput with the first problem found."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"not valid TOML: {exc}") from None
    return from_definition(raw, site)


def from_definition(raw: dict[str, Any], site: str) -> Process:
    unknown = set(raw) - {"process", "title", "tracker", "steps", "site", "attributes", "attribute_titles",
                          "value_titles"}
    if unknown:
        raise InvalidInput(f"unknown keys in the process definition: {', '.join(sorted(unknown))}")
    key = raw.get("process")
    if not isinstance(key, str) or not KEY.match(key):
        raise InvalidInput("`process` must be a key of 1-64 letters, digits, _ . : -, e.g. process = \"sales\"")
    title = raw.get("title", key)
    if not isinstance(title, str) or len(title) > 200:
        raise InvalidInput("`title` must be a string of at most 200 characters")
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise InvalidInput("a process needs at least one [[steps]] table")
    steps = [_step(i, s) for i, s in enumerate(steps_raw, start=1)]
    seen: set[str] = set()
    for step in steps:
        if step.key in seen:
            raise InvalidInput(f"step key {step.key!r} appears twice")
        seen.add(step.key)
    attributes = _attributes(raw.get("attributes", {}))
    attribute_titles, value_titles = _attribute_titles(raw.get("attribute_titles", {}), raw.get("value_titles", {}),
                                                       attributes)
    return Process(site=site, key=key, title=title, steps=tuple(steps), tracker=_tracker(raw.get("tracker", {})),
                   attributes=attributes, attribute_titles=attribute_titles, value_titles=value_titles)


def _attributes(raw: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise InvalidInput("[attributes] must be a table of names, each with a list of allowed values")
    if len(raw) > MAX_ATTRIBUTES:
        raise InvalidInput(f"[attributes]: at most {MAX_ATTRIBUTES} attributes, found {len(raw)}")
    out: dict[str, tuple[str, ...]] = {}
    # In name order: the stored definition's JSON is key-sorted, and a session's stratum (the tuple of
    # its values) must read the same before and after a round trip.
    for name, values in sorted(raw.items()):
        if not ATTRIBUTE_KEY.match(name):
            raise InvalidInput(f"[attributes] {name!r}: a name must be 1-32 lowercase letters, digits, _ or -")
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise InvalidInput(f"[attributes] {name}: must be a non-empty list of values, "
                               f'e.g. {name} = ["a", "b"]')
        if len(values) > MAX_ATTRIBUTE_VALUES:
            raise InvalidInput(f"[attributes] {name}: at most {MAX_ATTRIBUTE_VALUES} values, found {len(values)}")
        for value in values:
            if not ATTRIBUTE_KEY.match(value):
                raise InvalidInput(f"[attributes] {name}: value {value!r} must be 1-32 lowercase letters, "
                                   "digits, _ or -")
        if len(set(values)) != len(values):
            raise InvalidInput(f"[attributes] {name}: a value appears twice")
        out[name] = tuple(values)
    return out


def _attribute_titles(raw: Any, raw_values: Any, attributes: dict[str, tuple[str, ...]],
                      ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    if not isinstance(raw, dict) or not isinstance(raw_values, dict):
        raise InvalidInput("[attribute_titles] and [value_titles] must be tables")
    for name, title in raw.items():
        if name not in attributes:
            raise InvalidInput(f"[attribute_titles] {name}: not a declared attribute")
        if not isinstance(title, str) or not 0 < len(title) <= 200:
            raise InvalidInput(f"[attribute_titles] {name}: must be a string of 1-200 characters")
    for name, titles in raw_values.items():
        if name not in attributes:
            raise InvalidInput(f"[value_titles.{name}]: not a declared attribute")
        if not isinstance(titles, dict):
            raise InvalidInput(f"[value_titles.{name}] must be a table of value = title")
        for value, title in titles.items():
            if value not in attributes[name]:
                raise InvalidInput(f"[value_titles.{name}] {value}: not a declared value of {name}")
            if not isinstance(title, str) or not 0 < len(title) <= 200:
                raise InvalidInput(f"[value_titles.{name}] {value}: must be a string of 1-200 characters")
    return dict(raw), {name: dict(titles) for name, titles in raw_values.items()}


def _step(number: int, raw: Any) -> Step:
    if not isinstance(raw, dict):
        raise InvalidInput(f"step {number}: must be a table")
    unknown = set(raw) - {"key", "title", "patterns"}
    if unknown:
        raise InvalidInput(f"step {number}: unknown keys {', '.join(sorted(unknown))}")
    key = raw.get("key")
    if not isinstance(key, str) or not KEY.match(key):
        raise InvalidInput(f"step {number}: `key` must be 1-64 letters, digits, _ . : -")
    title = raw.get("title", key)
    if not isinstance(title, str) or len(title) > 200:
        raise InvalidInput(f"step {key}: `title` must be a string of at most 200 characters")
    patterns = raw.get("patterns", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise InvalidInput(f"step {key}: `patterns` must be a list of URL paths")
    for pattern in patterns:
        check_pattern(pattern, key)
    return Step(key=key, title=title, patterns=tuple(patterns))


def check_pattern(pattern: str, step: str) -> None:
    """The tracker matches a pattern against the whole path, so the path's shape must be exact."""
    if not pattern.startswith("/") or len(pattern) > 300:
        raise InvalidInput(f"step {step}: pattern {pattern!r} must be a path starting with /")
    if "//" in pattern:
        raise InvalidInput(f"step {step}: pattern {pattern!r} has an empty segment (a double /)")
    # a trailing / is kept: it matches only paths that end with one, as the tracker compares whole paths
    segments = [s for s in pattern.split("/")[1:] if s != ""]
    names = [s for s in segments if s.startswith("{")]
    for segment in segments:
        if not SEGMENT.match(segment):
            raise InvalidInput(f"step {step}: pattern {pattern!r}: segment {segment!r} is not a literal, * or {{name}}")
    if len(names) != len(set(names)):
        raise InvalidInput(f"step {step}: pattern {pattern!r} names a segment twice")


def _tracker(raw: Any) -> TrackerOptions:
    if not isinstance(raw, dict):
        raise InvalidInput("[tracker] must be a table")
    limits = {"idle_ms": (1_000, 3_600_000), "checkpoint_ms": (1_000, 600_000),
              "session_timeout_ms": (60_000, 24 * 3_600_000)}
    unknown = set(raw) - set(limits)
    if unknown:
        raise InvalidInput(f"[tracker]: unknown keys {', '.join(sorted(unknown))}")
    for name, value in raw.items():
        low, high = limits[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidInput(f"[tracker] {name} must be an integer from {low} to {high}")
    return TrackerOptions(**raw)


# -- storage --------------------------------------------------------------------------------


def load(client: Client, process: Process, *, actor: str, reason: str = "") -> tuple[Process, bool]:
    """Store the definition as the site's next version; (stored, changed). Unchanged: no new version."""
    current = latest(client, process.site)
    if current is not None and current.definition() == process.definition():
        return current, False
    version = (current.version if current else 0) + 1
    client.insert(
        "processes",
        [[process.site, process.key, version, json.dumps(process.definition(), sort_keys=True), actor, reason]],
        column_names=["site", "process", "version", "definition", "loaded_by", "reason"],
    )
    audit.record(client, actor, "process.load", f"{process.site}/{process.key}", reason,
                 {"version": version, "steps": [s.key for s in process.steps]})
    stored = latest(client, process.site)
    assert stored is not None
    return stored, True


@small_tables.remembered("processes")
def latest(client: Client, site: str) -> Process | None:
    rows = query_rows(
        client,
        "SELECT site, version, definition, loaded_at, loaded_by FROM processes "
        "WHERE site = {site:String} ORDER BY version DESC LIMIT 1",
        {"site": site},
    )
    return _from_row(rows[0]) if rows else None


def all_latest(client: Client) -> dict[str, Process]:
    """The current process of every site, by site name (the collector caches this)."""
    rows = query_rows(
        client,
        "SELECT site, version, definition, loaded_at, loaded_by FROM processes "
        "ORDER BY site, version DESC LIMIT 1 BY site",
    )
    return {row["site"]: _from_row(row) for row in rows}


def history(client: Client, site: str) -> list[dict[str, Any]]:
    return query_rows(
        client,
        "SELECT version, process, loaded_at, loaded_by, reason FROM processes WHERE site = {site:String} "
        "ORDER BY version DESC",
        {"site": site},
    )


def _from_row(row: dict[str, Any]) -> Process:
    process = from_definition(json.loads(row["definition"]), row["site"])
    return Process(**{**process.__dict__, "version": row["version"], "loaded_at": row["loaded_at"],
                      "loaded_by": row["loaded_by"]})


# -- which step a page counts as ------------------------------------------------------------------
# The same rules as the tracker's match() and clean() (tracker_js/src/rules.js): patterns in order,
# the first that matches the whole path wins; a pattern becomes a regular expression in which `*`
# and `{name}` stand for one non-empty segment (the rest is used as written, as the tracker does).

_PARAM = re.compile(r"\*|\{(\w+)\}")
_IDENTIFIER = re.compile(r"^\d+$|@|^(?=.*\d).{8}")
_LITERAL = re.compile(r"^[A-Za-z0-9_.~\-]{1,64}$")


def clean(segment: str) -> str:
    """The tracker's clean(): a segment that looks like an identifier (all digits, an e-mail address,
    8+ characters with a digit) becomes `:id`."""
    return ":id" if _IDENTIFIER.search(segment) else segment


def pattern_of(path: str) -> str:
    """A path as the tracker sends an unmatched one: every segment cleaned."""
    return re.sub(r"[^/]+", lambda m: clean(m.group(0)), path)


def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + _PARAM.sub("([^/]+)", pattern) + "$")


@dataclass(frozen=True)
class Match:
    step: str
    pattern: str
    path: str  # as stored: `{name}` segments as `:name`, `*` ones cleaned


def matches(process: Process, path: str) -> list[Match]:
    """Every rule that matches `path`, in the order the tracker tries them (the first one counts)."""
    found = []
    for step in process.steps:
        for pattern in step.patterns:
            parts = _regex(pattern).match(path)
            if parts is None:
                continue
            values = iter(parts.groups())

            def stored(m: re.Match[str], values: Any = values) -> str:
                value = next(values)
                return ":" + m.group(1) if m.group(1) else clean(value)

            found.append(Match(step.key, pattern, _PARAM.sub(stored, pattern)))
    return found


def match(process: Process, path: str) -> Match | None:
    found = matches(process, path)
    return found[0] if found else None


@dataclass(frozen=True)
class NearMiss:
    """A rule that does not match the path, and why: `segment` (1-based) differs, or only the trailing /."""

    step: str
    pattern: str
    segment: int  # 0: the paths differ only in a trailing /
    wanted: str
    found: str


@dataclass(frozen=True)
class UrlTest:
    """What the tester says about one URL: the step it counts as, or why none."""

    path: str
    pattern: str  # the path as discovery would report it (identifiers as :id)
    match: Match | None
    shadowed: tuple[Match, ...]  # later rules that match too, but the first wins
    near: tuple[NearMiss, ...]  # rules of the same length that miss by one segment, or by the trailing /
    suggested_rule: str  # a rule that would match this path (and its like): identifiers as *
    ignored_query: bool
    ignored_hash: bool


def test_url(process: Process, url: str) -> UrlTest:
    """Which step `url` (a full address or a path) would count as, or why none."""
    from urllib.parse import urlsplit

    text = url.strip()
    parts = urlsplit(text if "://" in text or text.startswith("/") else "/" + text)
    path = parts.path or "/"
    found = matches(process, path)
    near: list[NearMiss] = []
    if not found:
        segments = path.split("/")[1:]
        for step in process.steps:
            for pattern in step.patterns:
                wanted = pattern.split("/")[1:]
                if pattern.rstrip("/") == path.rstrip("/") or (
                        _regex(pattern.rstrip("/") or "/").match(path.rstrip("/") or "/")):
                    near.append(NearMiss(step.key, pattern, 0, "", ""))
                    continue
                if len(wanted) != len(segments):
                    continue
                differ = [i for i, (w, s) in enumerate(zip(wanted, segments, strict=True))
                          if not _regex("/" + w).match("/" + s)]
                if len(differ) == 1:
                    i = differ[0]
                    near.append(NearMiss(step.key, pattern, i + 1, wanted[i], segments[i]))
    # The likeliest typo first: the trailing /, then the segment that reads most like the rule's.
    near.sort(key=lambda n: (n.segment != 0, -difflib.SequenceMatcher(None, n.wanted, n.found).ratio()))
    pattern = pattern_of(path)
    rule = "/".join("*" if s == ":id" or (s and not _LITERAL.match(s)) else s for s in pattern.split("/"))
    return UrlTest(path=path, pattern=pattern, match=found[0] if found else None, shadowed=tuple(found[1:]),
                   near=tuple(near[:3]), suggested_rule=rule, ignored_query=bool(parts.query),
                   ignored_hash=bool(parts.fragment))


# -- changing a definition step by step (the process page's editor) --------------------------------------

MAX_STEPS = 200


def step_key_for(title: str, taken: set[str]) -> str:
    """A key for a step added by title: its ASCII letters and digits, else `step`; made unique."""
    base = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:40] or "step"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    return key


def edit_step(process: Process, key: str | None, *, title: str, patterns: list[str], position: int | None = None,
              new_key: str = "") -> Process:
    """The definition with one step changed (renamed, its rules replaced, moved to `position`, 1-based),
    or added when `key` is None (at `position`, else last). InvalidInput (with a code) naming the field."""
    title = title.strip()
    if not title:
        raise InvalidInput("a step needs a title", field="title", code="step_title_missing")
    if len(title) > 200:
        raise InvalidInput("a title has at most 200 characters", field="title", code="step_title_long")
    cleaned = [p.strip() for p in patterns if p.strip()]
    steps = list(process.steps)
    if key is None:
        taken = {s.key for s in steps}
        key = new_key.strip() or step_key_for(title, taken)
        if not KEY.match(key):
            raise InvalidInput("a key is 1-64 letters, digits, _ . : -", field="key", code="step_key_bad")
        if key in taken:
            raise InvalidInput(f"there is a step {key} already", field="key", code="step_key_taken",
                               values={"key": key})
        if len(steps) >= MAX_STEPS:
            raise InvalidInput(f"at most {MAX_STEPS} steps", field="title", code="too_many_steps")
        index = len(steps)
    else:
        index = [s.key for s in steps].index(process.step(key).key)
        steps.pop(index)
    for pattern in cleaned:
        try:
            check_pattern(pattern, key)
        except InvalidInput:
            raise InvalidInput(f"{pattern} is not a URL rule", field="patterns", code="rule_bad",
                               values={"rule": pattern[:100]}) from None
        for other in steps:
            if pattern in other.patterns:
                raise InvalidInput(f"{pattern} is a rule of {other.title} already", field="patterns",
                                   code="rule_taken", values={"rule": pattern, "step": other.title})
    if len(set(cleaned)) != len(cleaned):
        raise InvalidInput("a rule appears twice", field="patterns", code="rule_twice")
    for other in steps:
        if other.title.casefold() == title.casefold():  # pages and reports tell steps apart by title
            raise InvalidInput(f"there is a step called {other.title} already", field="title",
                               code="step_title_taken", values={"step": other.title})
    at = index if position is None else max(0, min(len(steps), position - 1))
    steps.insert(at, Step(key=key, title=title, patterns=tuple(cleaned)))
    return _replaced(process, steps)


def remove_step(process: Process, key: str) -> Process:
    step = process.step(key)
    if len(process.steps) == 1:
        raise InvalidInput("a process keeps at least one step", field="step", code="last_step")
    return _replaced(process, [s for s in process.steps if s.key != step.key])


def _replaced(process: Process, steps: list[Step]) -> Process:
    # Through from_definition: the result passes every check a TOML file does.
    return from_definition({**process.definition(), "steps": [
        {"key": s.key, "title": s.title, "patterns": list(s.patterns)} for s in steps]}, process.site)


def save_edit(client: Client, edited: Process, *, actor: str, reason: str) -> Process:
    """Store an edited definition as the next version; a reason is required (it goes to the audit log)."""
    if not reason.strip():
        raise InvalidInput("say why the process changes: the reason is kept in the audit log", field="reason",
                           code="reason_missing")
    stored, changed = load(client, edited, actor=actor, reason=reason.strip())
    if not changed:
        raise InvalidInput("nothing changed: the definition is the same as the current version", field="title",
                           code="nothing_changed")
    return stored


def step_visits(client: Client, site: str, step: str) -> int:
    """How many visits of the step are stored (its history stays when the step is removed)."""
    rows = query_rows(client, "SELECT uniqExact(visit_id) AS n FROM step_visits "
                              "WHERE site = {site:String} AND step = {step:String}", {"site": site, "step": step})
    return int(rows[0]["n"]) if rows else 0
