-- Each service session's path through the steps, per day: what the flow page (paths and rework,
-- dashboards/flow_figures.py) reads instead of putting every visit of its range in order again.
--
-- Expected query pattern: one site, a range of days (30 by default), the managers of one team or
-- one manager (or every manager of the site); each session's stays in order, from which the page
-- counts variants, edges A -> B with the median time from entering A to entering B, per step the
-- returns (rework) and ping-pong. At 1 million visits that read took 230-250 ms at p95 from the
-- `visits` view and grew with the visits; from here it reads one row per session and day.
--
-- One row per site, manager, day and session: the session's visits that started that day, each
-- counted once as its latest report, in order of started_at (ties by step), repeated visits of one
-- step in a row merged into one stay (as analysis/paths.py defines a path): the stays' steps, when
-- each began (ms since the epoch) and its time in each metric (the visits' times summed). A session
-- over midnight has a row on each day; the reader joins them in day order and merges a stay cut by
-- midnight, which gives what the visits in order give.
--
-- Kept by the analysis's refresh (storage.refresh_session_steps), the days session_steps gets,
-- with the same computed_at: a refresh rewrites whole days, then deletes the older rows of those
-- days in the background; until that delete is through, readers take each day's newest
-- computed_at (storage.older_refreshes_left_out). ReplacingMergeTree(computed_at) drops the older
-- rows in merges too.
-- ORDER BY (site, manager, day, session_id): a team's or a manager's rows are contiguous ranges of
-- days per manager; session_id makes the key unique. PARTITION BY month and TTL as for session_steps
-- (kernel/migrations.RETENTION_TABLES sets the configured retention at start).
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
TTL day + INTERVAL 400 DAY;

-- The days stored before this table: the watermark is cleared, so the next analysis run refreshes
-- every day from step_visits, a week per statement (session_steps and pair_days are rewritten with
-- the same figures on the way, as after migration 0012).
TRUNCATE TABLE IF EXISTS analysis_state;
