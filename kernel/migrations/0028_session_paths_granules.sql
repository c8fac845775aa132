-- session_paths read in granules of 1,024 rows instead of 8,192. Its key starts with the manager, so a
-- team's managers lie apart in the table, and one manager's 30 days are about 2,000 rows: with
-- granules of 8,192 rows the flow page read four to eight times the rows it kept for a team. Measured
-- at 10 million visits, a team's 30 days (dashboards/flow_figures.flow): 170-210 ms with the
-- larger granules, 125-130 ms with these; 25 managers side by side in the key took 105 ms either way.
--
-- The table is derived data: it is made again with the new setting, and the watermark is cleared so
-- the next analysis run refills it from step_visits (as migrations 0012 and 0024 did), rewriting
-- session_steps and pair_days with the same figures on the way.
DROP TABLE IF EXISTS session_paths;

CREATE TABLE IF NOT EXISTS session_paths
(
    site        LowCardinality(String),
    day         Date,
    manager     LowCardinality(String),
    session_id  String,
    steps       Array(LowCardinality(String)) COMMENT 'the stays in order, repeated visits of a step in a row merged',
    starts      Array(Int64) COMMENT 'when each stay began, milliseconds since the epoch',
    visible_ms  Array(UInt64) COMMENT 'each stay''s active + idle time',
    active_ms   Array(UInt64),
    wall_ms     Array(UInt64) COMMENT 'each stay''s active + idle + hidden time',
    computed_at DateTime64(6, 'UTC') COMMENT 'the refresh that wrote the row, as in session_steps; the newest wins'
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(day)
ORDER BY (site, manager, day, session_id)
TTL day + INTERVAL 400 DAY
SETTINGS index_granularity = 1024;

TRUNCATE TABLE IF EXISTS analysis_state;
