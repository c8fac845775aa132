"""The event contract: what the tracker may send, checked event by event.

A batch (`POST /v1/events`) is `{"site": KEY, "identity": TOKEN?, "events": [...]}`. Each event
is validated on its own: valid ones are kept, invalid ones are reported with their index and
a reason. Unknown fields are ignored, so a newer tracker can talk to an older collector.
docs/ingest.md describes the contract for people; `batch_schema()` serves it as JSON Schema.

Validated events become plain rows (str UUIDs, int epoch milliseconds): the same form is
inserted into ClickHouse and written to the spool, so a spooled batch replays unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, TypeAdapter, ValidationError

from stepwatch.settings import Settings

Uuid = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ),
]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
Key = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
EpochMs = Annotated[int, Field(ge=0, lt=2**47, strict=True)]
Millis = Annotated[int, Field(ge=0, lt=2**32, strict=True)]
Short = Annotated[str, StringConstraints(max_length=32, pattern=r"^[^\x00-\x1f\x7f]*$")]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class VisitEvent(_Event):
    """One report (checkpoint or final) of one stay of one manager on one step."""

    type: Literal["visit"]
    visit_id: Uuid = Field(description="UUID made by the tracker, the same for every checkpoint of the visit")
    seq: Annotated[int, Field(ge=0, lt=2**31, strict=True)] = Field(description="checkpoint number, increasing")
    final: StrictBool = Field(False, description="true on the last report of the visit")
    manager: Ident = Field(description="the CRM's id of the person")
    session_id: Key = Field(description="one client served from start to finish")
    customer: Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z0-9_\-]*$")] = Field(
        "", description="opaque reference, hashed by the tracker"
    )
    process: Key
    step: Key
    path: Annotated[str, StringConstraints(max_length=512, pattern=r"^[^\x00-\x1f\x7f?#]*$")] = Field(
        "", description="sanitized URL path: no query string, no fragment"
    )
    started_at: EpochMs = Field(description="UTC, epoch milliseconds")
    active_ms: Millis
    idle_ms: Millis
    hidden_ms: Millis
    tracker: Short = Field("", description="tracker version")


class SessionEvent(_Event):
    """The start or the end of serving one client."""

    type: Literal["session"]
    event_id: Uuid = Field(description="UUID made by the tracker; a replay repeats it")
    action: Literal["start", "end"]
    session_id: Key
    manager: Ident
    customer: Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z0-9_\-]*$")] = ""
    process: Key
    at: EpochMs = Field(description="UTC, epoch milliseconds")
    outcome: Annotated[str, StringConstraints(max_length=32, pattern=r"^[a-z0-9_]*$")] = Field(
        "", description="on end: e.g. sale, no_sale, abandoned"
    )
    tracker: Short = ""


Event = Annotated[VisitEvent | SessionEvent, Field(discriminator="type")]
_EVENT = TypeAdapter(Event)
_EVENTS = TypeAdapter(list[Event])


class Batch(BaseModel):
    """The body of POST /v1/events (`events` is checked one by one, see validate_events)."""

    model_config = ConfigDict(extra="ignore")
    site: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    identity: Annotated[str, StringConstraints(max_length=512)] | None = None
    events: list[Any]


@dataclass
class Rejection:
    index: int
    reason: str


@dataclass
class ValidatedBatch:
    visits: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    managers: set[str] = field(default_factory=set)

    @property
    def accepted(self) -> int:
        return len(self.visits) + len(self.sessions)


def validate_events(
    raw_events: list[Any],
    *,
    site: str,
    settings: Settings,
    now_ms: int | None = None,
    signed_manager: str | None = None,
    source: str = "tracker",
) -> ValidatedBatch:
    """Check each event; return the valid ones as rows and the rest as rejections."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    latest = now_ms + settings.clock_skew_s * 1000
    oldest = now_ms - settings.retention_days * 86_400_000
    try:
        events: list[VisitEvent | SessionEvent | None] = list(_EVENTS.validate_python(raw_events))
        errors: dict[int, str] = {}
    except ValidationError:
        # Slow path, only for batches with a bad event: find out which ones, keep the rest.
        events, errors = [], {}
        for index, raw in enumerate(raw_events):
            try:
                events.append(_EVENT.validate_python(raw))
            except ValidationError as exc:
                events.append(None)
                errors[index] = _reason(exc)

    out = ValidatedBatch()
    for index, event in enumerate(events):
        if event is None:
            out.rejected.append(Rejection(index, errors[index]))
            continue
        if signed_manager is not None and event.manager != signed_manager:
            out.rejected.append(Rejection(index, "manager: differs from the signed identity"))
            continue
        if isinstance(event, VisitEvent):
            if event.started_at > latest:
                out.rejected.append(Rejection(index, "started_at: in the future"))
                continue
            if event.started_at < oldest:
                out.rejected.append(Rejection(index, "started_at: older than the retention period"))
                continue
            longest = max(event.active_ms, event.idle_ms, event.hidden_ms)
            if longest > settings.max_duration_ms:
                out.rejected.append(Rejection(index, f"duration: above the maximum of {settings.max_duration_ms} ms"))
                continue
            out.visits.append((
                site, event.visit_id.lower(), event.seq, event.final, event.manager, event.session_id,
                event.customer, event.process, event.step, event.path, event.started_at,
                event.active_ms, event.idle_ms, event.hidden_ms, event.tracker, source,
            ))  # fmt: skip
        else:
            if event.at > latest:
                out.rejected.append(Rejection(index, "at: in the future"))
                continue
            if event.at < oldest:
                out.rejected.append(Rejection(index, "at: older than the retention period"))
                continue
            out.sessions.append((
                site, event.event_id.lower(), event.session_id, event.action, event.manager, event.customer,
                event.process, event.at, event.outcome, event.tracker, source,
            ))  # fmt: skip
        out.managers.add(event.manager)
    return out


def _reason(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"] if str(part) not in ("visit", "session"))
    return f"{where}: {first['msg']}" if where else first["msg"]


def batch_schema(max_events: int = 500) -> dict[str, Any]:
    """JSON Schema of a batch, with the event union spelled out, served at /v1/schema."""
    schema = TypeAdapter(Batch).json_schema()
    events = TypeAdapter(list[Event]).json_schema()
    schema.setdefault("$defs", {}).update(events.pop("$defs", {}))
    schema["properties"]["events"] = {**events, "maxItems": max_events}
    schema["title"] = "stepwatch event batch"
    schema["description"] = (
        "POST /v1/events body. Events are validated one by one; unknown fields are ignored. See docs/ingest.md."
    )
    return schema
