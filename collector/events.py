"""The event contract: what the tracker may send, checked event by event.

A batch (`POST /v1/events`) is `{"site": KEY, "identity": TOKEN?, "events": [...]}`. Each event
is validated on its own: valid ones are kept, invalid ones are reported with their index and
a reason. Unknown fields are ignored, so a newer tracker can talk to an older collector.
docs/ingest.md describes the contract for people; `batch_schema()` serves it as JSON Schema.

Speed matters here (tens of thousands of events a second on one core), so the common case
costs one pass of pydantic-core over the raw body (`validate_json`, no intermediate Python
objects) and one orjson call per event. Valid events become JSONEachRow lines: the same bytes
are inserted into ClickHouse (which parses them in C++) and written to the spool, so a spooled
batch replays unchanged. Only a batch with an invalid event takes the slower path that
validates events one at a time to say which.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import Field, StrictBool, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict, get_type_hints

from stepwatch.settings import Settings

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
    events: list[Any]  # dicts; for a batch that failed the fast path, None where an event is invalid
    errors: dict[int, str] = field(default_factory=dict)
    checked: bool = False  # True when the whole batch passed the bounded schema (no exact checks needed)


@dataclass
class ValidatedBatch:
    """Valid events as JSONEachRow lines, ready for storage.insert_visits / insert_session_events."""

    visits: list[bytes] = field(default_factory=list)
    sessions: list[bytes] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

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

    def _fast(self) -> TypeAdapter[Any]:
        now = time.time()
        if now - self._built_at >= self.REBUILD_S:
            self._bounded = _bounded_batch(self.settings, now, self.REBUILD_S)
            self._built_at = now
        return self._bounded

    def parse(self, body: bytes) -> ParsedBatch:
        """Parse and validate a request body; raise BadBatch when it is not a batch at all."""
        try:
            batch = self._fast().validate_json(body)
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
) -> ValidatedBatch:
    """Apply the checks that need context (time, identity) and turn valid events into rows."""
    out = ValidatedBatch()
    prefix = b'{"site":' + orjson.dumps(site) + b',"source":' + orjson.dumps(source) + b","
    events = parsed.events
    if not parsed.checked or signed_manager is not None:
        events = _exact_checks(parsed, out, settings, now_ms, signed_manager)
    visits, sessions = out.visits, out.sessions
    dumps = orjson.dumps
    for event in events:
        kind = event.pop("type")
        # ClickHouse reads a JSON number into DateTime64 as seconds: 1763884800.123 is exact to the ms.
        if kind == "visit":
            event["started_at"] = event["started_at"] / 1000
            visits.append(prefix + dumps(event)[1:])
        else:
            event["at"] = event["at"] / 1000
            sessions.append(prefix + dumps(event)[1:])
    return out


def _exact_checks(
    parsed: ParsedBatch, out: ValidatedBatch, settings: Settings, now_ms: int | None, signed_manager: str | None
) -> list[dict[str, Any]]:
    """The slow path: per-event reasons, the exact time limits, the signed manager."""
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
