-- Service sessions: the start and the end of serving one client, with an optional outcome.
--
-- Each event carries an event_id made by the tracker; a replayed batch repeats it, and the
-- ReplacingMergeTree collapses the copies (same sorting key). Queries are per site and manager
-- over a time range, hence the ORDER BY; PARTITION BY month and TTL as for step_visits.
CREATE TABLE IF NOT EXISTS session_events
(
    site       LowCardinality(String),
    event_id   UUID,
    session_id String,
    action     Enum8('start' = 1, 'end' = 2),
    manager    String,
    customer   String,
    process    LowCardinality(String),
    at         DateTime64(3, 'UTC'),
    outcome    LowCardinality(String) COMMENT 'e.g. sale, no_sale, abandoned; empty on start',
    tracker    LowCardinality(String),
    source     LowCardinality(String) DEFAULT 'tracker',
    received_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (site, manager, session_id, action, event_id)
TTL toDateTime(at) + INTERVAL 400 DAY;

-- One row per service session: when it started and ended, and how it ended.
CREATE VIEW IF NOT EXISTS service_sessions AS
SELECT site, session_id,
       any(manager) AS manager,
       any(customer) AS customer,
       any(process) AS process,
       minIf(at, action = 'start') AS started_at,
       maxIf(at, action = 'end') AS ended_at,
       countIf(action = 'end') > 0 AS ended,
       argMaxIf(outcome, at, action = 'end') AS outcome
FROM session_events FINAL
GROUP BY site, session_id;
