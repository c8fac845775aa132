"""Reading event logs as a stream: XES (IEEE 1849) and CSV, gzip-compressed or not.

Readers yield one `LogEvent` per event (or per CSV row), a `BadRow` for what cannot be read,
and, for XES, a `CaseEnd` when a trace closes: a trace is a whole case, so whatever the timing
rules keep for it can be let go there. Nothing is kept from one event to the next, so memory
does not grow with the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tomllib
import xml.parsers.expat
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

from kernel.errors import InvalidInput


class LogEvent(NamedTuple):
    """One event of the log. `end` is set only for a CSV row that carries both start and end."""

    number: int  # CSV line number, or the event's ordinal in an XES file (1-based)
    case: str
    activity: str
    resource: str
    lifecycle: str  # "start", "complete", another XES transition, or "" when the log has none
    at: float  # epoch seconds, UTC
    end: float | None = None
    attributes: tuple[tuple[str, str], ...] = ()  # (name, value) of the session attributes the log gives


class BadRow(NamedTuple):
    number: int
    reason: str


class CaseEnd(NamedTuple):
    """An XES trace closed: no later event belongs to this case."""

    case: str


# -- opening files ---------------------------------------------------------------------------


class CountingFile(io.RawIOBase):
    """A binary file that counts the bytes read from disk: the progress bar's numerator, which
    is right for a gzip file too (the compressed bytes consumed so far)."""

    def __init__(self, path: Path):
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.bytes_read = 0
        self.total = path.stat().st_size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer)
        self.bytes_read += n or 0
        return n or 0

    def close(self) -> None:
        self._file.close()
        super().close()


def open_log(path: Path) -> tuple[CountingFile, IO[bytes]]:
    """(the counted raw file, the decompressed byte stream); gzip is recognised by its magic bytes."""
    try:
        raw = CountingFile(path)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    with open(path, "rb") as probe:
        magic = probe.read(2)
    buffered = io.BufferedReader(raw, buffer_size=1 << 20)
    stream: IO[bytes] = gzip.GzipFile(fileobj=buffered, mode="rb") if magic == b"\x1f\x8b" else buffered
    return raw, stream


def guess_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".xes") or name.endswith(".xml"):
        return "xes"
    if name.endswith(".csv") or name.endswith(".tsv") or name.endswith(".txt"):
        return "csv"
    raise InvalidInput(f"cannot tell the format of {path.name} from its name: give --format csv or --format xes")


# -- timestamps ------------------------------------------------------------------------------


def parse_timestamp(text: str, fmt: str | None = None) -> float:
    """Epoch seconds from ISO 8601 (the default), a strptime format, or `unix` / `unix_ms`.
    A timestamp without a zone is taken as UTC."""
    text = text.strip()
    if fmt == "unix":
        return float(text)
    if fmt == "unix_ms":
        return float(text) / 1000
    value = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


# -- XES -------------------------------------------------------------------------------------


def read_xes(stream: IO[bytes], attribute_names: tuple[str, ...] = ()) -> Iterator[LogEvent | BadRow | CaseEnd]:
    """Events of an XES file in file order. The case is the trace's `concept:name`; an event
    needs `concept:name`, `org:resource` and `time:timestamp`; `lifecycle:transition` defaults to
    "" (the log does not say). The trace's own attributes named in `attribute_names` (session
    attributes, e.g. `segment`) go with each of its events.

    expat's callbacks rather than ElementTree.iterparse: no element objects are built, which
    makes reading about three times faster, and nothing is kept beyond the current event and the
    events of the last 1 MiB fed to the parser."""
    parser = xml.parsers.expat.ParserCreate()
    ready: list[LogEvent | BadRow | CaseEnd] = []
    state = {"depth": 0, "traces": 0, "number": 0, "case": "", "event_depth": 0}
    attributes: dict[str, str] = {}
    wanted = set(attribute_names)
    trace_attributes: dict[str, str] = {}

    def start(name: str, attrs: dict[str, str]) -> None:
        state["depth"] += 1
        tag = name.rpartition(":")[2]
        if tag == "event":
            state["event_depth"] = state["depth"]
            attributes.clear()
        elif tag == "trace":
            state["traces"] += 1
            state["case"] = ""
            state["trace_depth"] = state["depth"]
            trace_attributes.clear()
        elif "key" in attrs:
            # An event's own attributes are its direct children; nested ones (lists) are ignored.
            if state["event_depth"] and state["depth"] == state["event_depth"] + 1:
                attributes[attrs["key"]] = attrs.get("value", "")
            elif not state["event_depth"] and state.get("trace_depth") and state["depth"] == state["trace_depth"] + 1:
                if attrs["key"] == "concept:name":
                    state["case"] = attrs.get("value", "")
                elif attrs["key"] in wanted:
                    trace_attributes[attrs["key"]] = attrs.get("value", "")

    def end(name: str) -> None:
        tag = name.rpartition(":")[2]
        if tag == "event" and state["depth"] == state["event_depth"]:
            state["number"] += 1
            state["event_depth"] = 0
            case = state["case"] or f"trace-{state['traces']}"
            event = _xes_event(attributes, state["number"], str(case))
            if trace_attributes and isinstance(event, LogEvent):
                event = event._replace(attributes=tuple(trace_attributes.items()))
            ready.append(event)
        elif tag == "trace" and state["depth"] == state.get("trace_depth"):
            ready.append(CaseEnd(str(state["case"] or f"trace-{state['traces']}")))
            state["trace_depth"] = 0
        state["depth"] -= 1

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.buffer_text = True
    try:
        while chunk := stream.read(1 << 20):
            parser.Parse(chunk, False)
            yield from ready
            ready.clear()
        parser.Parse(b"", True)
    except xml.parsers.expat.ExpatError as exc:
        yield from ready
        yield BadRow(int(state["number"]) + 1,
                     f"the XES file is not well-formed XML ({exc}); the rest of the file is skipped")
        return
    yield from ready


def _xes_event(attributes: dict[str, str], number: int, case: str) -> LogEvent | BadRow:
    activity = attributes.get("concept:name") or ""
    resource = attributes.get("org:resource") or ""
    stamp = attributes.get("time:timestamp") or ""
    if not activity:
        return BadRow(number, "no concept:name (activity)")
    if not resource:
        return BadRow(number, "no org:resource (the person who did the work)")
    if not stamp:
        return BadRow(number, "no time:timestamp")
    try:
        at = parse_timestamp(stamp)
    except ValueError:
        return BadRow(number, f"time:timestamp is not ISO 8601: {stamp[:40]!r}")
    return LogEvent(number, case, activity, resource, (attributes.get("lifecycle:transition") or "").lower(), at)


# -- CSV -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvMapping:
    """Which CSV column holds what. Either `start` and `end`, or one `timestamp` (with an optional
    `lifecycle` column saying start/complete). Unset columns are looked up by their usual names."""

    case: str | None = None
    activity: str | None = None
    resource: str | None = None
    start: str | None = None
    end: str | None = None
    timestamp: str | None = None
    lifecycle: str | None = None
    timestamp_format: str | None = None
    delimiter: str = ","
    # session attribute -> its column; a declared attribute without one is read from a column named
    # like it (`segment`, or `case:segment` as pm4py and `stepwatch export` write it) when there is one
    attributes: tuple[tuple[str, str], ...] = ()

    def merged(self, other: CsvMapping) -> CsvMapping:
        """`other`'s values where set, this one's elsewhere (options override a mapping file)."""
        values = {f.name: getattr(other, f.name) or getattr(self, f.name)
                  for f in fields(self) if f.name != "attributes"}
        return CsvMapping(**values, attributes=tuple({**dict(self.attributes), **dict(other.attributes)}.items()))


# Usual column names, including those pm4py and `stepwatch export --format csv` write.
USUAL_NAMES = {
    "case": ("case", "case_id", "caseid", "case:concept:name", "case id"),
    "activity": ("activity", "concept:name", "task", "step"),
    "resource": ("resource", "org:resource", "user", "manager"),
    "start": ("start", "start_timestamp", "start_time", "starttime"),
    "end": ("end", "complete", "end_timestamp", "complete_timestamp", "end_time", "endtime"),
    "timestamp": ("timestamp", "time:timestamp", "time"),
    "lifecycle": ("lifecycle", "lifecycle:transition", "transition"),
}


def read_mapping_file(path: Path) -> CsvMapping:
    """A mapping file: TOML or JSON with the keys of CsvMapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"{path.name} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    known = {f.name for f in fields(CsvMapping)}
    unknown = set(raw) - known
    if unknown:
        raise InvalidInput(f"{path.name}: unknown keys {', '.join(sorted(unknown))} "
                           f"(known: {', '.join(sorted(known))})")
    attributes = raw.pop("attributes", {})
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise InvalidInput(f"{path.name}: `attributes` must be a table of attribute = column name")
    if not all(isinstance(v, str) for v in raw.values()):
        raise InvalidInput(f"{path.name}: every value must be a string (a column name or a format)")
    return CsvMapping(**raw, attributes=tuple(attributes.items()))


def read_csv(stream: IO[bytes], mapping: CsvMapping,
             attribute_names: tuple[str, ...] = ()) -> Iterator[LogEvent | BadRow]:
    """Rows of a CSV log. `attribute_names` are the session attributes to look for in columns
    named like them when the mapping does not name their column."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, delimiter=mapping.delimiter)
    header = next(reader, None)
    if header is None:
        return
    index = _columns(header, mapping)
    attribute_columns = _attribute_columns(header, mapping, attribute_names)
    fmt = mapping.timestamp_format
    case_i, activity_i, resource_i = index["case"], index["activity"], index["resource"]
    start_i, end_i, stamp_i, lifecycle_i = index.get("start"), index.get("end"), index.get("timestamp"), \
        index.get("lifecycle")
    width = max([*index.values(), *(i for _, i in attribute_columns)]) + 1
    for row in reader:
        number = reader.line_num
        if not row:
            continue
        if len(row) < width:
            yield BadRow(number, f"{len(row)} columns, expected at least {width}")
            continue
        case, activity, resource = row[case_i].strip(), row[activity_i].strip(), row[resource_i].strip()
        if not case or not activity or not resource:
            missing = [n for n, v in (("case", case), ("activity", activity), ("resource", resource)) if not v]
            yield BadRow(number, f"empty {', '.join(missing)}")
            continue
        try:
            if start_i is not None and end_i is not None:
                column = "start"
                at = parse_timestamp(row[start_i], fmt)
                column = "end"
                end = parse_timestamp(row[end_i], fmt)
                yield LogEvent(number, case, activity, resource, "", at, end,
                               tuple((name, row[i]) for name, i in attribute_columns))
            else:
                column = "timestamp"
                at = parse_timestamp(row[stamp_i], fmt)  # type: ignore[index]
                lifecycle = row[lifecycle_i].strip().lower() if lifecycle_i is not None else ""
                yield LogEvent(number, case, activity, resource, lifecycle, at, None,
                               tuple((name, row[i]) for name, i in attribute_columns))
        except ValueError:
            shown = row[index[column]][:40]
            yield BadRow(number, f"{column} is not a timestamp{' in ' + fmt if fmt else ' (ISO 8601)'}: {shown!r}")


def _attribute_columns(header: list[str], mapping: CsvMapping,
                       attribute_names: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    names = [h.strip() for h in header]
    found: dict[str, int] = {}
    for attribute, column in mapping.attributes:
        if column not in names:
            raise InvalidInput(f"the CSV has no column {column!r} (for the attribute {attribute}); "
                               f"its columns: {', '.join(names)}")
        found[attribute] = names.index(column)
    for attribute in attribute_names:
        for column in (attribute, f"case:{attribute}"):
            if attribute not in found and column in names:
                found[attribute] = names.index(column)
    return tuple(found.items())


def _columns(header: list[str], mapping: CsvMapping) -> dict[str, int]:
    names = [h.strip() for h in header]
    lowered = [n.lower() for n in names]
    index: dict[str, int] = {}
    for role, usual in USUAL_NAMES.items():
        given = getattr(mapping, role)
        if given:
            if given not in names:
                raise InvalidInput(f"the CSV has no column {given!r} (for {role}); its columns: {', '.join(names)}")
            index[role] = names.index(given)
        else:
            found = next((lowered.index(u) for u in usual if u in lowered), None)
            if found is not None:
                index[role] = found
    missing = [r for r in ("case", "activity", "resource") if r not in index]
    if missing:
        raise InvalidInput(f"which column holds the {', '.join(missing)}? give --{missing[0]} COLUMN "
                           f"(the CSV's columns: {', '.join(names)})")
    if mapping.timestamp and not (mapping.start and mapping.end):
        index.pop("start", None)
        index.pop("end", None)
    if not ("start" in index and "end" in index) and "timestamp" not in index:
        raise InvalidInput("give either --start and --end columns, or one --timestamp column "
                           f"(the CSV's columns: {', '.join(names)})")
    if "start" in index and "end" in index:
        index.pop("timestamp", None)
        index.pop("lifecycle", None)
    return index
