-- Daily pre-aggregate of the analysis: one row per site, day, manager, step and service session,
-- with the time of that session on that step that day (its visits summed, each visit counted once).
--
-- `stepwatch analyze` recomputes only the days that received new visits since its last run
-- (the watermark in analysis_state), so a run after one new day reads one day of raw visits;
-- a recomputed row replaces the old one (ReplacingMergeTree(computed_at)), which keeps the
-- aggregate exact under checkpoints and replays. Readers use FINAL.
-- ORDER BY (site, day, manager, step, session_id): windows are ranges of days; the rest makes
-- the key unique. PARTITION BY month and TTL as for step_visits.
CREATE TABLE IF NOT EXISTS session_steps
(
    site        LowCardinality(String),
    day         Date,
    manager     String,
    step        LowCardinality(String),
    session_id  String,
    visible_ms  UInt64,
    active_ms   UInt64,
    wall_ms     UInt64,
    computed_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, manager, step, session_id)
TTL day + INTERVAL 400 DAY;

-- How far the pre-aggregate has caught up: the latest received_at of step_visits it covers.
CREATE TABLE IF NOT EXISTS analysis_state
(
    site      String,
    watermark DateTime64(3, 'UTC'),
    updated   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY site;
