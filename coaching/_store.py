"""The coaching tables (kernel/migrations/0011_coaching.sql): every read and write of events and
evaluations, values bound as query parameters."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from coaching.lifecycle import CoachingEvent, payload_json
from kernel.errors import InvalidInput
from kernel.storage import query_rows

EVENT_COLUMNS = ("site", "assignment_id", "seq", "event_id", "at", "actor", "type", "reason", "payload")


def insert_event(client: Client, site: str, event: CoachingEvent) -> None:
    client.insert("coaching_events", [[site, event.assignment_id, event.seq, event.event_id, utc(event.at),
                                       event.actor, event.type, event.reason, payload_json(event.payload)]],
                  column_names=list(EVENT_COLUMNS))


def events(client: Client, *, site: str | None = None, assignment_id: str | None = None,
           assignment_ids: list[str] | None = None) -> list[CoachingEvent]:
    """The events of one assignment, of several, or of every assignment of a site, in fold order."""
    if assignment_id is not None:
        assignment_ids = [assignment_id]
    if assignment_ids is not None:
        rows = query_rows(client, "SELECT assignment_id, seq, event_id, at, actor, type, reason, payload "
                                  "FROM coaching_events WHERE assignment_id IN {ids:Array(UUID)} "
                                  "ORDER BY assignment_id, seq, at, event_id", {"ids": assignment_ids})
    else:
        rows = query_rows(client, "SELECT assignment_id, seq, event_id, at, actor, type, reason, payload "
                                  "FROM coaching_events WHERE site = {site:String} "
                                  "ORDER BY assignment_id, seq, at, event_id", {"site": site or ""})
    return [CoachingEvent(assignment_id=str(r["assignment_id"]), seq=int(r["seq"]), event_id=str(r["event_id"]),
                          at=aware(r["at"]), actor=r["actor"], type=r["type"], reason=r["reason"],
                          payload=json.loads(r["payload"] or "{}")) for r in rows]


def matching_ids(client: Client, text: str) -> list[str]:
    """The assignment id, or every id that starts with `text`, a prefix of at least 6 characters (as
    printed). Whoever asks then keeps only those they may see (assignments.get): how many ids share
    a prefix is itself something to see."""
    text = text.strip().lower()
    try:
        return [str(uuid.UUID(text))]
    except ValueError:
        pass
    if len(text) < 6 or any(ch not in "0123456789abcdef-" for ch in text):
        raise InvalidInput(f"not an assignment id: {text!r} (the id, or its first 6 characters or more)")
    rows = query_rows(client, "SELECT DISTINCT toString(assignment_id) AS id FROM coaching_events "
                              "WHERE startsWith(toString(assignment_id), {p:String}) LIMIT 1000", {"p": text})
    return [str(row["id"]) for row in rows]


def site_of(client: Client, assignment_id: str) -> str | None:
    rows = query_rows(client, "SELECT any(site) AS site, count() AS n FROM coaching_events "
                              "WHERE assignment_id = {id:UUID}", {"id": assignment_id})
    return rows[0]["site"] if rows and rows[0]["n"] else None


def managers_on_step(client: Client, site: str, step: str, since: date, until: date, managers: list[str]) -> int:
    """How many of `managers` have sessions on `step` from `since` (included) to `until` (excluded)."""
    if not managers:
        return 0
    rows = query_rows(client, "SELECT uniqExact(manager) AS n FROM pair_days WHERE site = {site:String} "
                              "AND step = {step:String} AND day >= {since:Date} AND day < {until:Date} "
                              "AND manager IN {managers:Array(String)}",
                      {"site": site, "step": step, "since": since, "until": until, "managers": managers})
    return int(rows[0]["n"]) if rows else 0


@dataclass(frozen=True)
class StoredEvaluation:
    """One evaluation as stored: the checkpoint, the windows, the verdict and every figure."""

    site: str
    assignment_id: str
    checkpoint: int
    evaluated_at: datetime
    pre_since: date
    pre_until: date
    post_since: date
    post_until: date
    verdict: str
    target_met: bool | None
    figures: dict[str, Any]  # coaching.evaluation.Evaluation.figures, plus peer_scope and band

    def as_dict(self) -> dict[str, Any]:
        return {**{k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.__dict__.items()
                   if k != "figures"}, "evaluated_at": iso(self.evaluated_at), "figures": self.figures}


def insert_evaluation(client: Client, stored: StoredEvaluation) -> None:
    f = stored.figures
    client.insert("coaching_evaluations", [[
        stored.site, stored.assignment_id, stored.checkpoint, utc(stored.evaluated_at), stored.pre_since,
        stored.pre_until, stored.post_since, stored.post_until, stored.verdict, stored.target_met, f["pre_n"],
        f["post_n"], f["pre_median_ms"], f["post_median_ms"], f["change_pct"], f["relative_effect_pct"],
        f["minutes_saved_per_week"], json.dumps(f, sort_keys=True), time.time_ns(),
    ]], column_names=["site", "assignment_id", "checkpoint", "evaluated_at", "pre_since", "pre_until", "post_since",
                      "post_until", "verdict", "target_met", "pre_n", "post_n", "pre_median_ms", "post_median_ms",
                      "change_pct", "relative_effect_pct", "minutes_saved_per_week", "figures", "version"])


def evaluations(client: Client, *, site: str | None = None, assignment_id: str | None = None) -> list[StoredEvaluation]:
    rows = query_rows(
        client,
        "SELECT site, assignment_id, checkpoint, evaluated_at, pre_since, pre_until, post_since, post_until, verdict, "
        "target_met, figures FROM coaching_evaluations FINAL "
        "WHERE ({site:String} = '' OR site = {site:String}) "
        "AND ({id:String} = '' OR toString(assignment_id) = {id:String}) ORDER BY assignment_id, checkpoint",
        {"site": site or "", "id": assignment_id or ""},
    )
    return [StoredEvaluation(**{**r, "assignment_id": str(r["assignment_id"]), "checkpoint": int(r["checkpoint"]),
                                "evaluated_at": aware(r["evaluated_at"]), "figures": json.loads(r["figures"])})
            for r in rows]


def analysed_until(client: Client, site: str) -> datetime | None:
    """How far the analysis's pre-aggregate of session times has caught up with arriving visits
    (the watermark of storage.refresh_session_steps), or None before its first run."""
    rows = query_rows(client, "SELECT max(watermark) AS w, count() AS n FROM analysis_state FINAL "
                              "WHERE site = {site:String}", {"site": site})
    return aware(rows[0]["w"]) if rows and rows[0]["n"] else None


def aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc(value: datetime) -> datetime:
    """An aware UTC datetime: clickhouse-connect takes a naive one for local time, not UTC."""
    return aware(value)


def iso(value: datetime) -> str:
    return aware(value).isoformat(timespec="seconds").replace("+00:00", "Z")
