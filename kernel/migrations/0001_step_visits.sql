-- Step visits: one stay of one manager on one step of serving one client.
--
-- Expected queries (analysis, dashboards): per site, manager, step and day, e.g. "the last 14
-- days of manager M on step S", "every manager x step over a window", "what changed since the
-- last analysis run". Writes are append-only batches from the collector (group commit).
--
-- ENGINE ReplacingMergeTree(seq): the tracker reports a visit several times (checkpoints every
--   15 s, then a final report) and may deliver a batch twice. Rows with the same sorting key
--   collapse into the one with the highest seq, so storage converges to one row per visit.
--   Merges are eventual: readers use the `visits` view (FINAL), never this table directly.
-- PARTITION BY month of started_at: a visit's started_at never changes across its checkpoints,
--   so all of them land in one partition (ReplacingMergeTree only collapses within a partition);
--   monthly parts keep the part count low and let TTL drop whole months cheaply.
-- ORDER BY (site, manager, step, day, visit_id): the analysis reads per manager x step over a
--   range of days, so those rows are contiguous and the primary index skips everything else;
--   visit_id last makes the key unique per visit, which is what deduplication collapses on.
-- TTL: visits older than the retention (STEPWATCH_RETENTION_DAYS, default 400 days, applied at
--   start by `ALTER TABLE ... MODIFY TTL` when it differs) are deleted by ClickHouse itself.
CREATE TABLE IF NOT EXISTS step_visits
(
    site       LowCardinality(String) COMMENT 'site name (one CRM deployment)',
    visit_id   UUID                   COMMENT 'made by the tracker, one per stay on a step',
    seq        UInt32                 COMMENT 'checkpoint number, increasing; the highest wins',
    final      Bool                   COMMENT 'true on the last report of the visit',
    manager    String                 COMMENT 'the CRM''s id of the person',
    session_id String                 COMMENT 'one client served from start to finish',
    customer   String                 COMMENT 'opaque reference, hashed by the tracker',
    process    LowCardinality(String),
    step       LowCardinality(String),
    path       String                 COMMENT 'sanitized URL path',
    started_at DateTime64(3, 'UTC'),
    active_ms  UInt32,
    idle_ms    UInt32,
    hidden_ms  UInt32,
    tracker    LowCardinality(String) COMMENT 'tracker version',
    source     LowCardinality(String) DEFAULT 'tracker' COMMENT 'tracker, or import:<file> for imported history',
    received_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(seq)
PARTITION BY toYYYYMM(started_at)
ORDER BY (site, manager, step, toDate(started_at), visit_id)
TTL toDateTime(started_at) + INTERVAL 400 DAY;

-- Every reader goes through this view: exactly one row per visit, its latest checkpoint.
CREATE VIEW IF NOT EXISTS visits AS
SELECT site, visit_id, seq, final, manager, session_id, customer, process, step, path,
       started_at, active_ms, idle_ms, hidden_ms, tracker, source
FROM step_visits FINAL;
