-- Step discovery (kernel/discovery.py, docs/processes.md#discovery): while a site's discovery is
-- switched on, the tracker counts the pages that match no step by their sanitized path pattern,
-- and the collector adds the counts up per site, pattern and day. Nothing else is kept: no time of
-- day, no manager, no session, no page content.
--
-- discovery_windows: every switch, on or off, in order; the latest row of a site says whether
-- discovery is on (until > now). A few rows per site and year: read whole per site.
CREATE TABLE IF NOT EXISTS discovery_windows
(
    site   LowCardinality(String),
    at     DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when it was switched',
    until  DateTime('UTC') COMMENT 'when discovery ends; the switch time itself when switched off',
    set_by String,
    reason String
)
ENGINE = MergeTree
ORDER BY (site, at);

-- discovered_paths: page views per site, pattern and day, summed in merges (readers sum too).
-- Expected query pattern: one site's patterns over the last days, top N by views, with their first
-- and last day. ORDER BY (site, pattern, day) keeps a pattern's days together; the table stays
-- small (a site has tens to a few thousand patterns a day). Its TTL is the retention's, like the
-- visits' (kernel/migrations.RETENTION_TABLES sets the configured retention at start).
CREATE TABLE IF NOT EXISTS discovered_paths
(
    site    LowCardinality(String),
    pattern String COMMENT 'sanitized path: identifiers replaced by :id',
    day     Date,
    views   UInt64
)
ENGINE = SummingMergeTree(views)
ORDER BY (site, pattern, day)
TTL day + INTERVAL 400 DAY;
