-- The manager x step pairs of the daily pre-aggregate, by the hash session_steps stores for them
-- (`pair`): how the overview names the figures it groups by that number, instead of carrying the
-- two strings through the grouping of millions of session rows (a third of that query's time for
-- 30 days of 10 million visits; docs/performance.md).
--
-- Kept by a materialized view on every insert into session_steps (each refresh of the analysis),
-- so a pair is here as soon as its rows are. One row per site and pair once merged; before that a
-- pair may have a row per refresh, and readers take any of them (they are equal).
-- ORDER BY (site, pair): a site's pairs are read together. No TTL: a few thousand rows a site.
CREATE TABLE IF NOT EXISTS session_pairs
(
    site    LowCardinality(String),
    pair    UInt64 COMMENT 'cityHash64(manager, step), as session_steps.pair',
    manager LowCardinality(String),
    step    LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (site, pair);

CREATE MATERIALIZED VIEW IF NOT EXISTS session_pairs_mv TO session_pairs AS
SELECT DISTINCT site, cityHash64(manager, step) AS pair, manager, step
FROM session_steps;

-- The pairs stored before this migration (run again, it adds rows the merge folds away).
INSERT INTO session_pairs
SELECT DISTINCT site, pair, manager, step FROM session_steps;
