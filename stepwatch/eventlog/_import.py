"""Importing an event log as step visits and service sessions (see docs/import-export.md).

Events become work intervals by one of two timing rules, intervals become visits (a case worked
by one person is one service session; the activity is the step; the resource is the manager),
and visits go to ClickHouse in blocks through the storage module, as the collector's own rows.
Every id is derived from the log's content, so importing a file again rewrites the same rows.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from hashlib import sha1
from pathlib import Path
from typing import NamedTuple

import orjson
from clickhouse_connect.driver.client import Client

from kernel import processes, sites, storage
from kernel.errors import InvalidInput
from kernel.settings import Settings
from stepwatch.eventlog._read import BadRow, CaseEnd, CsvMapping, LogEvent, guess_format, open_log, read_csv, read_xes

# Fixed, so ids made from the same log are the same on every machine and every run.
NAMESPACE = uuid.UUID("5b0e3c1e-6a59-4a0b-9a43-2f1d0c7e8a11")
_NS_BYTES = NAMESPACE.bytes
DEFAULT_PROCESS = "imported"
SHOWN_BAD_ROWS = 20
_NOT_KEY = re.compile(r"[^A-Za-z0-9_.:\-]+")


def step_key(activity: str) -> str:
    """The step key of an activity: runs of characters a key may not hold become `_`, 64 at most.
    `W_Completeren aanvraag` -> `W_Completeren_aanvraag`; the activity itself is the step's title."""
    return _NOT_KEY.sub("_", activity.strip())[:64] or "_"


def customer_ref(site: sites.Site, case: str, pseudonyms: sites.Pseudonyms | None = None) -> str:
    """What is stored for a case: the pseudonym of the hash the tracker would send for it as a customer
    reference (the site's salt, then its secret key: sites.Pseudonyms), as for the collector's events.
    A case id that is also the customer reference the CRM's pages show thus links with tracked events."""
    return (pseudonyms or sites.Pseudonyms(site.pseudonym_key))(sites.tracker_hash(site.salt, case))


def uuid5(name: str) -> str:
    """`str(uuid.uuid5(NAMESPACE, name))`, about four times faster: two are made per visit."""
    digest = bytearray(sha1(_NS_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def session_id_of(site: str, case: str, resource: str) -> str:
    return uuid5(f"{site}|{case}|{resource}")


@dataclass(frozen=True)
class ImportOptions:
    site: str
    fmt: str | None = None  # "csv" or "xes"; None: from the file name
    mapping: CsvMapping = field(default_factory=CsvMapping)
    timing: str = "auto"  # "pairs", "gaps" or "auto"
    max_gap_ms: int = 4 * 3_600_000
    strict: bool = False
    block_rows: int = 50_000


@dataclass
class ImportSummary:
    file: str
    source: str
    timing: str = ""
    unit: str = "line"  # what a bad row's number counts: CSV lines, or XES events
    events: int = 0
    visits: int = 0
    sessions: int = 0
    bad_rows: int = 0
    bad_by_reason: Counter[str] = field(default_factory=Counter)
    first_bad: list[tuple[int, str]] = field(default_factory=list)
    steps_added: list[str] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)  # events that are no work interval, not errors
    seconds: float = 0.0

    def bad(self, number: int, reason: str) -> None:
        self.bad_rows += 1
        # Group by the reason's first clause so counts stay few while messages keep their detail.
        self.bad_by_reason[reason.split(":")[0]] += 1
        if len(self.first_bad) < SHOWN_BAD_ROWS:
            self.first_bad.append((number, reason))

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "source": self.source, "timing": self.timing, "events": self.events,
                "visits": self.visits, "sessions": self.sessions, "bad_rows": self.bad_rows,
                "bad_by_reason": dict(self.bad_by_reason), "first_bad": [list(b) for b in self.first_bad],
                "steps_added": self.steps_added, "ignored": dict(self.ignored), "seconds": round(self.seconds, 2),
                "events_per_second": round(self.events / self.seconds) if self.seconds else None}


class Interval(NamedTuple):
    number: int
    case: str
    activity: str
    resource: str
    start: float
    end: float
    attributes: tuple[tuple[str, str], ...] = ()


Item = LogEvent | BadRow | CaseEnd


def pair_intervals(items: Iterator[Item], summary: ImportSummary) -> Iterator[Interval | BadRow]:
    """Start/complete logs: each `start` with the next `complete` of the same case, activity and
    resource. Open starts wait in a dict: memory is the number of open work items (for XES, at
    most one trace's, as a trace end closes its case)."""
    open_items: dict[tuple[str, str, str], LogEvent] = {}
    for item in items:
        if isinstance(item, CaseEnd):
            # Traces do not nest: whatever is open belongs to the case that just ended.
            for left in open_items.values():
                yield BadRow(left.number, "start without complete: the case ended with the work item open")
            open_items.clear()
            continue
        summary.events += 1
        if isinstance(item, BadRow):
            yield item
            continue
        if item.end is not None:
            yield Interval(item.number, item.case, item.activity, item.resource, item.at, item.end, item.attributes)
            continue
        key = (item.case, item.activity, item.resource)
        if item.lifecycle == "start":
            earlier = open_items.get(key)
            if earlier is not None:
                yield BadRow(earlier.number, "start without complete: the same work item started again")
            open_items[key] = item
        elif item.lifecycle == "complete":
            started = open_items.pop(key, None)
            if started is None:
                yield BadRow(item.number, "complete without a start of the same case, activity and resource")
            else:
                yield Interval(started.number, item.case, item.activity, item.resource, started.at, item.at,
                               started.attributes or item.attributes)
        else:
            summary.ignored[f"lifecycle {item.lifecycle or '(none)'}"] += 1
    for left in open_items.values():
        yield BadRow(left.number, "start without complete: the log ended with the work item open")


def gap_intervals(items: Iterator[Item], summary: ImportSummary, max_gap_s: float) -> Iterator[Interval | BadRow]:
    """Single-timestamp logs: an event's processing time is the time since the same resource's
    previous event in the case. A resource's first event in a case has no such time, and a gap
    longer than the cap is not taken as work (a night, a weekend): neither becomes a visit."""
    last: dict[tuple[str, str], float] = {}
    for item in items:
        if isinstance(item, CaseEnd):
            last.clear()  # an XES trace is the whole case
            continue
        summary.events += 1
        if isinstance(item, BadRow):
            yield item
            continue
        if item.lifecycle not in ("", "complete"):
            summary.ignored[f"lifecycle {item.lifecycle}"] += 1
            continue
        key = (item.case, item.resource)
        previous = last.get(key)
        if previous is not None and item.at < previous:
            yield BadRow(item.number, "earlier than the resource's previous event in the case "
                                      "(the processing-time rule needs each case in time order)")
            continue
        last[key] = item.at
        if previous is None:
            summary.ignored["first event of a resource in a case"] += 1
        elif item.at - previous > max_gap_s:
            summary.ignored["gap over the cap"] += 1
        else:
            yield Interval(item.number, item.case, item.activity, item.resource, previous, item.at, item.attributes)


def _choose_timing(items: Iterator[Item], timing: str) -> tuple[str, Iterator[Item]]:
    """`auto`: pairs if a `start` event shows up in the first 10,000 events, else gaps."""
    if timing != "auto":
        return timing, items
    seen: list[Item] = []
    found = "gaps"
    for item in items:
        seen.append(item)
        if isinstance(item, LogEvent) and (item.lifecycle == "start" or item.end is not None):
            found = "pairs"
            break
        if len(seen) >= 10_000:
            break

    def replay() -> Iterator[Item]:
        yield from seen
        yield from items

    return found, replay()


class _Writer:
    """Turns intervals into JSONEachRow rows and writes them in blocks, adding unknown steps to the
    site's process before the block that needs them."""

    def __init__(self, client: Client, settings: Settings, options: ImportOptions, source: str,
                 summary: ImportSummary, site: sites.Site):
        self.client, self.settings, self.options, self.summary = client, settings, options, summary
        self.site, self.pseudonyms = site, sites.Pseudonyms(site.pseudonym_key)
        self.customers: dict[str, str] = {}  # case -> customer: a case has many events
        self.process = processes.latest(client, options.site)
        self.steps = {s.key for s in self.process.steps} if self.process else set()
        self.process_key = self.process.key if self.process else DEFAULT_PROCESS
        self.new_steps: dict[str, str] = {}  # key -> title, waiting for the next block
        self.prefix = orjson.dumps({"site": options.site, "source": source})[:-1] + b","
        self.visits: list[bytes] = []
        # session_id -> [manager, customer, first start, last end, attributes of its first visit]
        self.sessions: dict[str, list[object]] = {}
        self.declared = self.process.attributes if self.process else {}
        now = time.time()
        self.oldest = now - settings.retention_days * 86_400
        self.newest = now + settings.clock_skew_s
        self.max_s = settings.max_duration_ms / 1000

    def add(self, iv: Interval) -> None:
        duration = iv.end - iv.start
        if duration < 0:
            self.summary.bad(iv.number, "complete before start")
            return
        if duration > self.max_s:
            self.summary.bad(iv.number, f"longer than STEPWATCH_MAX_DURATION_MS ({self.max_s / 3600:g} h): "
                                        "a work item left open, not work time")
            return
        if iv.start < self.oldest:
            self.summary.bad(iv.number, f"older than the retention: STEPWATCH_RETENTION_DAYS is "
                                        f"{self.settings.retention_days}; raise it (up to 25000) to import history "
                                        "this old")
            return
        if iv.end > self.newest:
            self.summary.bad(iv.number, "in the future: a timestamp after now")
            return
        if len(iv.resource) > 128 or not iv.resource.isprintable():
            self.summary.bad(iv.number, "resource is longer than 128 characters or holds control characters")
            return
        attributes = {name: value.strip().lower() for name, value in iv.attributes if value.strip()}
        if attributes and (problem := processes.attribute_problem(self.declared, attributes)):
            self.summary.bad(iv.number, problem)
            return
        step = step_key(iv.activity)
        if step not in self.steps and step not in self.new_steps:
            if self.options.strict:
                self.summary.bad(iv.number, f"unknown step (--strict): {step!r} is not in the site's process")
                return
            self.new_steps[step] = iv.activity[:200]
        session = session_id_of(self.options.site, iv.case, iv.resource)
        start_ms = round(iv.start * 1000)
        visit_id = uuid5(f"{self.options.site}|{iv.case}|{iv.activity}|{iv.resource}|{start_ms}")
        customer = self.customers.get(iv.case)
        if customer is None:
            if len(self.customers) >= 100_000:
                self.customers.clear()
            customer = self.customers[iv.case] = customer_ref(self.site, iv.case, self.pseudonyms)
        self.visits.append(self.prefix + orjson.dumps({
            "visit_id": visit_id, "seq": 0, "final": True, "manager": iv.resource, "session_id": session,
            "customer": customer, "process": self.process_key, "step": step, "path": "",
            "started_at": start_ms / 1000, "active_ms": round(duration * 1000), "idle_ms": 0, "hidden_ms": 0,
            "tracker": "import"})[1:])
        bounds = self.sessions.get(session)
        if bounds is None:
            self.sessions[session] = [iv.resource, customer, iv.start, iv.end, attributes]
        else:
            bounds[2], bounds[3] = min(bounds[2], iv.start), max(bounds[3], iv.end)  # type: ignore[call-overload]
        self.summary.visits += 1
        if len(self.visits) >= self.options.block_rows:
            self.flush()

    def flush(self) -> None:
        if self.new_steps:
            self._add_steps()
        storage.insert_visits(self.client, b"\n".join(self.visits))
        # A session's start and end as seen in this block. A session spread over several blocks
        # gets one pair per block; service_sessions takes the earliest start and the latest end.
        # The event id is made from the session, action and time, so a re-import repeats it.
        events = []
        for session, (manager, customer, first, last, attributes) in self.sessions.items():
            for action, at in (("start", first), ("end", last)):
                at_ms = round(at * 1000)  # type: ignore[operator]
                events.append(self.prefix + orjson.dumps({
                    "event_id": uuid5(f"{session}|{action}|{at_ms}"), "session_id": session,
                    "action": action, "manager": manager, "customer": customer, "process": self.process_key,
                    "at": at_ms / 1000, "outcome": "", "attributes": attributes if action == "start" else {},
                    "tracker": "import"})[1:])
        storage.insert_session_events(self.client, b"\n".join(events))
        self.visits, self.sessions = [], {}

    def _add_steps(self) -> None:
        added = [processes.Step(key=k, title=t, patterns=()) for k, t in self.new_steps.items()]
        if self.process is None:
            name = Path(self.summary.file).name
            self.process = processes.Process(site=self.options.site, key=self.process_key,
                                             title=f"imported from {name}"[:200], steps=())
        updated = processes.Process(site=self.process.site, key=self.process.key, title=self.process.title,
                                    steps=self.process.steps + tuple(added), tracker=self.process.tracker,
                                    attributes=self.process.attributes, attribute_titles=self.process.attribute_titles,
                                    value_titles=self.process.value_titles)
        self.process, _ = processes.load(self.client, updated, actor="import",
                                         reason=f"import {self.summary.file}: steps found in the log")
        self.steps.update(self.new_steps)
        self.summary.steps_added += list(self.new_steps)
        self.new_steps = {}


def import_log(client: Client, settings: Settings, path: Path, options: ImportOptions,
               progress: Callable[[int, int, int], None] | None = None) -> ImportSummary:
    """Import an event log into a site; `progress(bytes read, file size, events)` is called now and then."""
    site = sites.get_site(client, options.site)  # NotFound names the site
    if options.timing not in ("auto", "pairs", "gaps"):
        raise InvalidInput(f"timing must be auto, pairs or gaps, not {options.timing!r}")
    fmt = options.fmt or guess_format(path)
    source = f"import:{path.name}"[:100]
    summary = ImportSummary(file=path.name, source=source, unit="event" if fmt == "xes" else "line")
    began = time.monotonic()
    process = processes.latest(client, options.site)
    declared = tuple(process.attributes) if process else ()
    undeclared = [name for name, _ in options.mapping.attributes if name not in declared]
    if undeclared:
        raise InvalidInput(f"attribute {undeclared[0]!r} is not declared by the process of site {options.site} "
                           f"(declared: {', '.join(declared) or 'none'}); add it to [attributes] and load the process")
    raw, stream = open_log(path)
    try:
        events: Iterator[Item] = (read_xes(stream, declared) if fmt == "xes"
                                  else iter(read_csv(stream, options.mapping, declared)))
        summary.timing, events = _choose_timing(events, options.timing)
        intervals = (pair_intervals(events, summary) if summary.timing == "pairs"
                     else gap_intervals(events, summary, options.max_gap_ms / 1000))
        writer = _Writer(client, settings, options, source, summary, site)
        for n, item in enumerate(intervals):
            if isinstance(item, BadRow):
                summary.bad(item.number, item.reason)
            else:
                writer.add(item)
            if progress is not None and n % 20_000 == 0:
                progress(raw.bytes_read, raw.total, summary.events)
        writer.flush()
        if progress is not None:
            progress(raw.total, raw.total, summary.events)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path.name} is not UTF-8 text: {exc}") from None
    finally:
        stream.close()
        raw.close()
    summary.sessions = int(client.command(
        "SELECT uniqExact(session_id) FROM visits WHERE site = {site:String} AND source = {source:String}",
        parameters={"site": options.site, "source": source}))
    summary.seconds = time.monotonic() - began
    return summary
