-- The latest analysis of every manager x step: what `stepwatch stats` and the dashboards show
-- without recomputing. Each run writes all its rows with the same run_at; readers take the rows
-- of the site's latest run. ReplacingMergeTree(run_at) keeps one row per pair in the long run.
CREATE TABLE IF NOT EXISTS pair_stats
(
    site         String,
    run_at       DateTime64(3, 'UTC'),
    window_start Date,
    window_end   Date,
    team         String,
    manager      String,
    step         String,
    row          String COMMENT 'the stats row as JSON, exactly as stepwatch stats --json prints it'
)
ENGINE = ReplacingMergeTree(run_at)
ORDER BY (site, manager, step);
