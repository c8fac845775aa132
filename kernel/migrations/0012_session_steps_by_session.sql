-- The daily pre-aggregate again, laid out so the analysis reads it without FINAL and without a
-- GROUP BY over strings (replaces 0007's table; docs/performance.md has the measurements).
--
-- Still one row per site, day, manager, step and service session, with the time of that session
-- on that step that day (its visits summed, each visit counted once as its latest report). What
-- changed:
-- - pair and session_key: hashes of (manager, step) and (manager, step, session_id), computed on
--   insert, so the lookback read moves numbers, not strings. The few sessions with more than one
--   row in a range (past midnight, or back on a later day) are found by their session_key and
--   summed exactly by their strings; a hash collision only sends two sessions down that path.
-- - A refresh writes whole days, every row of a refresh with one computed_at, then deletes the
--   older rows of those days (a lightweight DELETE, in the background). Readers take each day's
--   newest computed_at, so an older refresh's rows count for nothing even before they are gone,
--   and no FINAL is needed. ReplacingMergeTree(computed_at) also drops them in merges.
-- - computed_at in microseconds, so two refreshes never share it; manager is LowCardinality (a few
--   hundred managers per site).
-- ORDER BY (site, day, manager, step, session_id): windows are ranges of days; the rest is the
-- unique key. PARTITION BY month and TTL as for step_visits.
--
-- The table is derived data: it is dropped and rebuilt, and the watermark is cleared so the next
-- analysis run refills it from step_visits (once, like a store that received its history at once).
DROP TABLE IF EXISTS session_steps;

CREATE TABLE IF NOT EXISTS session_steps
(
    site        LowCardinality(String),
    day         Date,
    manager     LowCardinality(String),
    step        LowCardinality(String),
    session_id  String,
    pair        UInt64 MATERIALIZED cityHash64(manager, step),
    session_key UInt64 MATERIALIZED cityHash64(manager, step, session_id),
    visible_ms  UInt64,
    active_ms   UInt64,
    wall_ms     UInt64,
    computed_at DateTime64(6, 'UTC') DEFAULT now64(6) COMMENT 'the refresh that wrote the row; the newest wins'
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, manager, step, session_id)
TTL day + INTERVAL 400 DAY;

TRUNCATE TABLE IF EXISTS analysis_state;
