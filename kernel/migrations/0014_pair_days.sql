-- The daily pre-aggregate once more, per manager x step instead of per session: one row per site,
-- day, pair and refresh, with that day's session times as arrays. What the overview with chosen
-- dates reads for its heatmap (quantiles per manager x step over any range of days).
--
-- The quantiles need every session's time, so the overview gathered 3.4 million session rows into
-- 1,600 groups for 30 days of 10 million visits, a row at a time (150 ms of CPU). Here each group
-- gathers about 30 arrays (quantilesExactInclusiveArray): 100 ms. The figures are the same numbers.
--
-- Kept by a materialized view on every insert into session_steps (each refresh of the analysis):
-- rows carry the refresh's computed_at, the refresh deletes a day's older rows from both tables,
-- and until that delete is through, readers take each day's newest computed_at, checked here (a
-- few thousand rows for a month, against millions in session_steps). An insert split into several
-- blocks gives a pair several rows for a day: readers concatenate them all.
-- Times as UInt32 milliseconds (a session's time on a step in a day is far below 2^32 ms, 49 days;
-- capped there). ORDER BY (site, day, pair): ranges of days; PARTITION BY month and TTL as for
-- session_steps.
CREATE TABLE IF NOT EXISTS pair_days
(
    site        LowCardinality(String),
    day         Date,
    pair        UInt64 COMMENT 'cityHash64(manager, step), as session_steps.pair',
    manager     LowCardinality(String),
    step        LowCardinality(String),
    visible_ms  Array(UInt32) COMMENT 'each session''s active + idle time on the step that day',
    active_ms   Array(UInt32),
    wall_ms     Array(UInt32),
    computed_at DateTime64(6, 'UTC') COMMENT 'the refresh of session_steps these rows come from'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, pair)
TTL day + INTERVAL 400 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS pair_days_mv TO pair_days AS
SELECT site, day, cityHash64(manager, step) AS pair, manager, step,
       groupArray(toUInt32(least(visible_ms, 4294967295))) AS visible_ms,
       groupArray(toUInt32(least(active_ms, 4294967295))) AS active_ms,
       groupArray(toUInt32(least(wall_ms, 4294967295))) AS wall_ms,
       computed_at
FROM session_steps
GROUP BY site, day, manager, step, computed_at;

-- The days stored before this migration, each as its newest refresh (an older one waiting for its
-- delete would wait forever here). TRUNCATE first: run again by hand, nothing counts twice.
TRUNCATE TABLE pair_days;

INSERT INTO pair_days
SELECT site, day, cityHash64(manager, step), manager, step,
       groupArray(toUInt32(least(visible_ms, 4294967295))), groupArray(toUInt32(least(active_ms, 4294967295))),
       groupArray(toUInt32(least(wall_ms, 4294967295))), computed_at
FROM session_steps
WHERE (site, day, computed_at) IN (SELECT site, day, max(computed_at) FROM session_steps GROUP BY site, day)
GROUP BY site, day, manager, step, computed_at;
