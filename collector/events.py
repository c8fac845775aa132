"""The event contract: what the tracker may send, checked event by event.

A batch (`POST /v1/events`) is `{"site": KEY, "identity": TOKEN?, "events": [...]}`. Each event
is validated on its own: valid ones are kept, invalid ones are reported with their index and
a reason. Unknown fields are ignored, so a newer tracker can talk to an older collector.
docs/ingest.md describes the contract for people; `batch_schema()` serves it as JSON Schema.

The contract is written once, as pydantic types (the published schema, and the per-event
reasons). Speed matters here (100,000 events a second on two shared cores), so a batch takes
the first of three paths that accepts it:

1. msgspec (the common case): one C pass decodes the body into structs with the types, lengths
   and this minute's time and duration limits built in; the character rules (UUIDs, keys,
   customer references, paths, control characters) are checked on whole batches at once, with
   C-level string operations instead of a regular expression per field; one msgspec call per
   event encodes its row. It only accepts what the pydantic contract accepts, and gives up on
   anything else (any backslash in the body, to begin with: then no string holds an escape).
2. pydantic-core over the raw body (`validate_json`), with the same limits.
3. A batch with an invalid event: each event validated on its own against the pydantic
   contract, and `check_events` applies the exact limits, with a reason for each rejected event.

Valid events become JSONEachRow lines, or for the collector JSONCompactEachRow lines (see
ValidatedBatch): the same bytes are inserted into ClickHouse (which parses them in C++) and
written to the spool, so a spooled batch replays unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from typing import Annotated, Any, Literal, NotRequired

import msgspec
import orjson
from pydantic import Field, StrictBool, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict, get_type_hints

from kernel.processes import attribute_problem
from kernel.settings import Settings
from kernel.storage import SESSION_EVENT_COLUMNS, VISIT_COLUMNS

Uuid = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
Key = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Customer = Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z0-9_\-]*$")]
EpochMs = Annotated[int, Field(ge=0, lt=2**47, strict=True)]
Millis = Annotated[int, Field(ge=0, lt=2**32, strict=True)]
Short = Annotated[str, StringConstraints(max_length=32, pattern=r"^[^\x00-\x1f\x7f]*$")]
AttributeKey = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_\-]+$")]
MAX_ATTRIBUTES = 4  # as kernel.processes.MAX_ATTRIBUTES: a process declares at most that many


class VisitEvent(TypedDict):
    """One report (checkpoint or final) of one stay of one manager on one step."""

    type: Literal["visit"]
    visit_id: Annotated[Uuid, Field(description="made by the tracker, the same for every checkpoint of the visit")]
    seq: Annotated[int, Field(ge=0, lt=2**31, strict=True, description="checkpoint number, increasing")]
    final: NotRequired[Annotated[StrictBool, Field(description="true on the last report of the visit")]]
    manager: Annotated[Ident, Field(description="the CRM's id of the person")]
    session_id: Annotated[Key, Field(description="one client served from start to finish")]
    customer: NotRequired[Annotated[Customer, Field(description="opaque reference, hashed by the tracker")]]
    process: Key
    step: Key
    path: NotRequired[
        Annotated[
            str,
            StringConstraints(max_length=512, pattern=r"^[^\x00-\x1f\x7f?#]*$"),
            Field(description="sanitized URL path: no query string, no fragment"),
        ]
    ]
    started_at: Annotated[EpochMs, Field(description="UTC, epoch milliseconds")]
    active_ms: Millis
    idle_ms: Millis
    hidden_ms: Millis
    tracker: NotRequired[Annotated[Short, Field(description="tracker version")]]


class SessionEvent(TypedDict):
    """The start or the end of serving one client."""

    type: Literal["session"]
    event_id: Annotated[Uuid, Field(description="made by the tracker; a replay repeats it")]
    action: Literal["start", "end"]
    session_id: Key
    manager: Ident
    customer: NotRequired[Customer]
    process: Key
    at: Annotated[EpochMs, Field(description="UTC, epoch milliseconds")]
    outcome: NotRequired[
        Annotated[
            str,
            StringConstraints(max_length=32, pattern=r"^[a-z0-9_]*$"),
            Field(description="on end: e.g. sale, no_sale, abandoned"),
        ]
    ]
    attributes: NotRequired[
        Annotated[
            dict[AttributeKey, AttributeKey],
            Field(max_length=MAX_ATTRIBUTES,
                  description="the session's attributes, e.g. {\"segment\": \"vip\"} (the start event's are the "
                              "session's); only names and values the site's process declares ([attributes]), else "
                              "the event is rejected"),
        ]
    ]
    tracker: NotRequired[Short]


Event = Annotated[VisitEvent | SessionEvent, Field(discriminator="type")]
SiteKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Token = Annotated[str, StringConstraints(max_length=512)]


class Batch(TypedDict):
    """The body of POST /v1/events."""

    site: SiteKey
    identity: NotRequired[Token | None]
    events: list[Event]


class Envelope(TypedDict):
    """A batch whose events are not checked yet (the slow path checks them one by one)."""

    site: SiteKey
    identity: NotRequired[Token | None]
    events: list[Any]


_BATCH = TypeAdapter(Batch)  # the contract as published (/v1/schema)
_ENVELOPE = TypeAdapter(Envelope)
_EVENT = TypeAdapter(Event)


class BadBatch(ValueError):
    """The body is not JSON, or not a batch: the whole request is refused (400)."""


@dataclass
class Rejection:
    index: int
    reason: str


@dataclass
class ParsedBatch:
    site: str
    identity: str | None
    events: list[Any]  # dicts (or msgspec structs, see `visit_type`); None where an event is invalid
    errors: dict[int, str] = field(default_factory=dict)
    checked: bool = False  # True when the whole batch passed the bounded schema (no exact checks needed)
    visit_type: type | None = None  # set when msgspec decoded the batch: events are structs of this type or a session

    def managers(self) -> set[str]:
        """The managers the valid events name."""
        if self.visit_type is not None:
            return {e.manager for e in self.events}
        return {e["manager"] for e in self.events if e is not None}


@dataclass
class ValidatedBatch:
    """Valid events as JSONEachRow lines, ready for storage.insert_visits / insert_session_events.

    With `compact`, JSONCompactEachRow lines instead: one JSON array per row, every column of
    storage.VISIT_COLUMNS / SESSION_EVENT_COLUMNS in that order. The collector stores those: the
    rows are a third of the size, and ClickHouse parses them in half the CPU (no key per value).
    """

    visits: list[bytes] = field(default_factory=list)
    sessions: list[bytes] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    compact: bool = False

    @property
    def accepted(self) -> int:
        return len(self.visits) + len(self.sessions)


class Validator:
    """Validates batches with the time and duration limits built into the schema.

    pydantic-core then checks everything in one pass over the raw body, so a valid batch (the
    common case) needs no per-event Python checks. The limits move with the clock: the adapter
    is rebuilt each minute with a window narrowed by that minute, so whatever it accepts is
    valid at any moment of the minute. A batch it refuses takes the slow path: each event is
    validated against the plain contract, and `check_events` applies the exact limits, with a
    reason for each rejected event.
    """

    REBUILD_S = 60

    def __init__(self, settings: Settings):
        self.settings = settings
        self._built_at = -1.0
        self._bounded: TypeAdapter[Any] = _BATCH
        self._compiled: _Compiled | None = None

    def _fast(self) -> TypeAdapter[Any]:
        self._rebuild()
        return self._bounded

    def _rebuild(self) -> None:
        now = time.time()
        if now - self._built_at >= self.REBUILD_S:
            self._bounded = _bounded_batch(self.settings, now, self.REBUILD_S)
            self._compiled = _compiled_batch(self.settings, now, self.REBUILD_S)
            self._built_at = now

    def parse(self, body: bytes) -> ParsedBatch:
        """Parse and validate a request body; raise BadBatch when it is not a batch at all."""
        self._rebuild()
        assert self._compiled is not None
        fast = self._compiled.parse(body)
        if fast is not None:
            return fast
        try:
            batch = self._bounded.validate_json(body)
            return ParsedBatch(batch["site"], batch.get("identity"), batch["events"], checked=True)
        except ValidationError:
            pass
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadBatch("body is not valid JSON") from None
        try:
            envelope = _ENVELOPE.validate_python(raw)
        except ValidationError as exc:
            raise BadBatch(_reason(exc)) from None
        events: list[Any] = []
        errors: dict[int, str] = {}
        for index, event in enumerate(envelope["events"]):
            try:
                events.append(_EVENT.validate_python(event))
            except ValidationError as exc:
                events.append(None)
                errors[index] = _reason(exc)
        return ParsedBatch(envelope["site"], envelope.get("identity"), events, errors)


def _bounded_batch(settings: Settings, now: float, valid_for_s: int) -> TypeAdapter[Any]:
    """The batch schema with this minute's limits on timestamps and durations built in."""
    now_ms = int(now * 1000)
    oldest = now_ms + valid_for_s * 1000 - settings.retention_days * 86_400_000
    latest = now_ms + settings.clock_skew_s * 1000
    moment = Annotated[int, Field(ge=oldest, le=latest, strict=True)]
    duration = Annotated[int, Field(ge=0, le=settings.max_duration_ms, strict=True)]
    visit_fields = get_type_hints(VisitEvent, include_extras=True)
    session_fields = get_type_hints(SessionEvent, include_extras=True)
    visit = TypedDict(  # type: ignore[misc]
        "BoundedVisit",
        {**visit_fields, "started_at": moment, "active_ms": duration, "idle_ms": duration, "hidden_ms": duration},
    )
    session = TypedDict("BoundedSession", {**session_fields, "at": moment})  # type: ignore[misc]
    event = Annotated[visit | session, Field(discriminator="type")]  # type: ignore[valid-type]
    batch_fields = {**get_type_hints(Batch, include_extras=True), "events": list[event]}  # type: ignore[valid-type]
    return TypeAdapter(TypedDict("BoundedBatch", batch_fields))  # type: ignore[operator]


# -- the compiled path (msgspec) ------------------------------------------------------------------
#
# Mirrors the pydantic contract above field by field (tests/test_ingest_fastpath.py checks that it
# never accepts what pydantic refuses, and that both write the same rows). Optional fields default
# to what ClickHouse stores when they are missing, so a row written from either path is the same.

_HEX = b"0123456789abcdefABCDEF"
_KEY_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
_CUSTOMER_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_OUTCOME_CHARS = b"abcdefghijklmnopqrstuvwxyz0123456789_"
_VISIT_KEYS = attrgetter("session_id", "process", "step")
_SESSION_KEYS = attrgetter("session_id", "process")
_VISIT_ID, _EVENT_ID = attrgetter("visit_id"), attrgetter("event_id")
_CUSTOMER, _PATH, _OUTCOME = attrgetter("customer"), attrgetter("path"), attrgetter("outcome")


@dataclass(frozen=True)
class _Compiled:
    """This minute's msgspec decoder, and what the rules left to check on whole batches need."""

    decoder: msgspec.json.Decoder[Any]
    visit: type

    def parse(self, body: bytes) -> ParsedBatch | None:
        """The batch, fully checked; None if this path cannot vouch for it (the other paths decide)."""
        # No backslash: no string holds an escape, hence no control character (JSON refuses them
        # raw). DEL is the one control character JSON allows raw.
        if b"\\" in body or b"\x7f" in body:
            return None
        try:
            batch = self.decoder.decode(body)
        except Exception:  # invalid JSON, UTF-8 or event, nesting too deep...: the other paths say which
            return None
        events, visit = batch.events, self.visit
        visits = [e for e in events if type(e) is visit]
        sessions = [e for e in events if type(e) is not visit] if len(visits) < len(events) else []
        if not (_uuids_ok("".join(chain(map(_VISIT_ID, visits), map(_EVENT_ID, sessions))), len(events))
                and not "".join(chain.from_iterable(chain(map(_VISIT_KEYS, visits), map(_SESSION_KEYS, sessions))))
                .encode().translate(None, _KEY_CHARS)
                and not "".join(map(_CUSTOMER, events)).encode().translate(None, _CUSTOMER_CHARS)
                and not "".join(map(_OUTCOME, sessions)).encode().translate(None, _OUTCOME_CHARS)):
            return None
        paths = "".join(map(_PATH, visits))
        if "?" in paths or "#" in paths:
            return None
        return ParsedBatch(batch.site, batch.identity, events, checked=True, visit_type=visit)


def _uuids_ok(joined: str, count: int) -> bool:
    """`count` UUIDs of 36 characters each (msgspec checked the lengths), written one after another."""
    dashes = "-" * count
    return (joined[8::36] == dashes and joined[13::36] == dashes and joined[18::36] == dashes
            and joined[23::36] == dashes and joined.count("-") == 4 * count
            and not joined.encode().translate(None, _HEX + b"-"))


def _compiled_batch(settings: Settings, now: float, valid_for_s: int) -> _Compiled:
    """msgspec types of a batch with this minute's limits built in (as `_bounded_batch`)."""
    from msgspec import Meta

    now_ms = int(now * 1000)
    moment = Annotated[int, Meta(ge=now_ms + valid_for_s * 1000 - settings.retention_days * 86_400_000,
                                 le=now_ms + settings.clock_skew_s * 1000)]
    duration = Annotated[int, Meta(ge=0, le=settings.max_duration_ms)]
    uuid = Annotated[str, Meta(min_length=36, max_length=36)]  # and the characters: _uuids_ok
    ident = Annotated[str, Meta(min_length=1, max_length=128)]  # control characters: no backslash
    key = Annotated[str, Meta(min_length=1, max_length=64)]  # and _KEY_CHARS
    customer = Annotated[str, Meta(max_length=128)]  # and _CUSTOMER_CHARS
    short = Annotated[str, Meta(max_length=32)]
    attribute = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9_\-]+$")]

    # defstruct, not class statements: this module's annotations are strings (from __future__).
    # Fields in the order of the table's columns (without site and source), for compact rows.
    visit = msgspec.defstruct("Visit", [
        ("visit_id", uuid), ("seq", Annotated[int, Meta(ge=0, lt=2**31)]), ("final", bool, False),
        ("manager", ident), ("session_id", key), ("customer", customer, ""), ("process", key), ("step", key),
        ("path", Annotated[str, Meta(max_length=512)], ""),  # and neither ? nor #
        ("started_at", moment), ("active_ms", duration), ("idle_ms", duration), ("hidden_ms", duration),
        ("tracker", short, ""),
    ], tag_field="type", tag="visit", gc=False, kw_only=True)
    session = msgspec.defstruct("Session", [
        ("event_id", uuid), ("session_id", key), ("action", Literal["start", "end"]), ("manager", ident),
        ("customer", customer, ""), ("process", key), ("at", moment),
        ("outcome", short, ""),  # and _OUTCOME_CHARS
        ("attributes", Annotated[dict[attribute, attribute], Meta(max_length=MAX_ATTRIBUTES)], {}),
        ("tracker", short, ""),
    ], tag_field="type", tag="session", gc=False, kw_only=True)
    assert visit.__struct_fields__ == VISIT_COLUMNS[1:-1], "the table's columns changed"
    assert session.__struct_fields__ == SESSION_EVENT_COLUMNS[1:-1], "the table's columns changed"
    batch = msgspec.defstruct("CompiledBatch", [
        ("site", Annotated[str, Meta(min_length=1, max_length=128)]),
        ("events", list[visit | session]),  # type: ignore[valid-type]
        ("identity", Annotated[str, Meta(max_length=512)] | None, None),
    ])
    return _Compiled(msgspec.json.Decoder(batch), visit)


_ENCODE = msgspec.json.Encoder().encode
_ASTUPLE = msgspec.structs.astuple
# What a row holds for an optional field the event left out (ClickHouse's default for the column).
_DEFAULTS: dict[str, Any] = {"final": False, "customer": "", "path": "", "tracker": "", "outcome": "",
                             "attributes": {}}
_VISIT_TAG, _SESSION_TAG = len(b'{"type":"visit",'), len(b'{"type":"session",')  # what msgspec writes first


def parse_batch(body: bytes, settings: Settings | None = None) -> ParsedBatch:
    """Parse a body once (tests, imports); the collector keeps a Validator instead."""
    return Validator(settings or Settings()).parse(body)


def check_events(
    parsed: ParsedBatch,
    *,
    site: str,
    settings: Settings,
    now_ms: int | None = None,
    signed_manager: str | None = None,
    source: str = "tracker",
    compact: bool = False,
    pseudonyms: Callable[[str], str] | None = None,
    attributes: dict[str, tuple[str, ...]] | None = None,
) -> ValidatedBatch:
    """Apply the checks that need context (time, identity, the declared session attributes) and turn
    valid events into rows (JSONCompactEachRow lines with `compact`, see ValidatedBatch). With
    `pseudonyms` (the site's kernel.sites.Pseudonyms), each customer reference is stored as its
    pseudonym. `attributes` are the names and values the site's process declares (none: a session
    start naming any is rejected)."""
    out = ValidatedBatch(compact=compact)
    declared = attributes or {}
    if parsed.visit_type is not None:
        if pseudonyms is not None:
            for event in parsed.events:
                event.customer = pseudonyms(event.customer)
        return _check_compiled(parsed, out, site, source, signed_manager, declared)
    prefix = b'{"site":' + orjson.dumps(site) + b',"source":' + orjson.dumps(source) + b","
    events = parsed.events
    if not parsed.checked or signed_manager is not None or any(e and e.get("attributes") for e in events):
        events = _exact_checks(parsed, out, settings, now_ms, signed_manager, declared)
    visits, sessions = out.visits, out.sessions
    dumps = orjson.dumps
    for event in events:
        kind = event.pop("type")
        if pseudonyms is not None and "customer" in event:
            event["customer"] = pseudonyms(event["customer"])
        # ClickHouse reads a JSON number into DateTime64 as seconds: 1763884800.123 is exact to the ms.
        if kind == "visit":
            event["started_at"] = event["started_at"] / 1000
            if compact:
                visits.append(dumps([site, *(event.get(c, _DEFAULTS.get(c)) for c in VISIT_COLUMNS[1:-1]), source]))
            else:
                visits.append(prefix + dumps(event)[1:])
        else:
            event["at"] = event["at"] / 1000
            if compact:
                sessions.append(
                    dumps([site, *(event.get(c, _DEFAULTS.get(c)) for c in SESSION_EVENT_COLUMNS[1:-1]), source]))
            else:
                sessions.append(prefix + dumps(event)[1:])
    return out


def _check_compiled(
    parsed: ParsedBatch, out: ValidatedBatch, site: str, source: str, signed_manager: str | None,
    declared: dict[str, tuple[str, ...]],
) -> ValidatedBatch:
    """Rows of a batch the compiled path checked: only the signed manager and the declared session
    attributes are left to compare."""
    visit, encode, visits, sessions = parsed.visit_type, _ENCODE, out.visits, out.sessions
    rejected = out.rejected if signed_manager is not None else None
    # Session starts with attributes are few: they are checked here, the rest of the batch untouched.
    refused = {index: problem for index, event in enumerate(parsed.events)
               if type(event) is not visit and event.attributes
               and (problem := attribute_problem(declared, event.attributes))}
    if refused:
        out.rejected.extend(Rejection(index, problem) for index, problem in refused.items())
        kept = [(i, e) for i, e in enumerate(parsed.events) if i not in refused]
    else:
        kept = list(enumerate(parsed.events))
    # As on the other paths, ClickHouse reads a JSON number into DateTime64 as seconds.
    if out.compact:  # [site, <the struct's fields: the columns in order>, source]
        head, tail, astuple = b"[" + orjson.dumps(site) + b",", b"," + orjson.dumps(source) + b"]", _ASTUPLE
        for index, event in kept:
            if rejected is not None and event.manager != signed_manager:
                rejected.append(Rejection(index, "manager: differs from the signed identity"))
            elif type(event) is visit:
                event.started_at = event.started_at / 1000
                visits.append(head + encode(astuple(event))[1:-1] + tail)
            else:
                event.at = event.at / 1000
                sessions.append(head + encode(astuple(event))[1:-1] + tail)
        return out
    prefix = b'{"site":' + orjson.dumps(site) + b',"source":' + orjson.dumps(source) + b","
    for index, event in kept:  # the row starts with site and source, not the type
        if rejected is not None and event.manager != signed_manager:
            rejected.append(Rejection(index, "manager: differs from the signed identity"))
        elif type(event) is visit:
            event.started_at = event.started_at / 1000
            visits.append(prefix + encode(event)[_VISIT_TAG:])
        else:
            event.at = event.at / 1000
            sessions.append(prefix + encode(event)[_SESSION_TAG:])
    return out


def _exact_checks(
    parsed: ParsedBatch, out: ValidatedBatch, settings: Settings, now_ms: int | None, signed_manager: str | None,
    declared: dict[str, tuple[str, ...]],
) -> list[dict[str, Any]]:
    """The slow path: per-event reasons, the exact time limits, the signed manager, the declared attributes."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    latest = now_ms + settings.clock_skew_s * 1000
    oldest = now_ms - settings.retention_days * 86_400_000
    longest = settings.max_duration_ms
    kept = []
    for index, event in enumerate(parsed.events):
        if event is None:
            out.rejected.append(Rejection(index, parsed.errors[index]))
            continue
        if signed_manager is not None and event["manager"] != signed_manager:
            out.rejected.append(Rejection(index, "manager: differs from the signed identity"))
            continue
        field_name = "started_at" if event["type"] == "visit" else "at"
        if event[field_name] > latest:
            out.rejected.append(Rejection(index, f"{field_name}: in the future"))
            continue
        if event[field_name] < oldest:
            out.rejected.append(Rejection(index, f"{field_name}: older than the retention period"))
            continue
        if field_name == "started_at" and max(event["active_ms"], event["idle_ms"], event["hidden_ms"]) > longest:
            out.rejected.append(Rejection(index, f"duration: above the maximum of {longest} ms"))
            continue
        if event.get("attributes") and (problem := attribute_problem(declared, event["attributes"])):
            out.rejected.append(Rejection(index, problem))
            continue
        kept.append(event)
    return kept


def _reason(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"] if str(part) not in ("visit", "session"))
    return f"{where}: {first['msg']}" if where else first["msg"]


def batch_schema(max_events: int = 500) -> dict[str, Any]:
    """JSON Schema of a batch, served at /v1/schema."""
    schema = _BATCH.json_schema()
    schema["properties"]["events"]["maxItems"] = max_events
    schema["title"] = "stepwatch event batch"
    schema["description"] = (
        "POST /v1/events body. Events are validated one by one; unknown fields are ignored. See docs/ingest.md."
    )
    return schema
