"""Prometheus metrics of the collector, served at GET /metrics.

One registry for the process (not the global default one, so nothing else leaks in).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_ACCEPTED = Counter(
    "stepwatch_events_accepted", "Events accepted and made durable.", ["kind"], registry=REGISTRY
)
EVENTS_REJECTED = Counter(
    "stepwatch_events_rejected", "Events or whole requests rejected, by reason.", ["reason"], registry=REGISTRY
)
REQUEST_EVENTS = Histogram(
    "stepwatch_request_events", "Events per POST /v1/events.", buckets=(1, 5, 10, 25, 50, 100, 250, 500),
    registry=REGISTRY,
)
BATCH_ROWS = Histogram(
    "stepwatch_group_commit_rows", "Rows per group commit (one durable write).",
    buckets=(1, 10, 100, 500, 1000, 5000, 10_000, 50_000), registry=REGISTRY,
)
INSERT_SECONDS = Histogram(
    "stepwatch_insert_seconds", "Latency of one ClickHouse insert.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5), registry=REGISTRY,
)
SPOOL_BYTES = Gauge("stepwatch_spool_bytes", "Bytes waiting in the spool for ClickHouse.", registry=REGISTRY)

# Children bound once: a label lookup per request is measurable at tens of thousands of events a second.
VISITS_ACCEPTED = EVENTS_ACCEPTED.labels(kind="visit")
SESSIONS_ACCEPTED = EVENTS_ACCEPTED.labels(kind="session")
INVALID_EVENTS = EVENTS_REJECTED.labels(reason="invalid_event")
