-- Drawdown flags and their history.
--
-- flags: one row per version of a flag (ReplacingMergeTree(version)); `FINAL` gives each flag's
-- current state. A flag is identified by flag_id; the analysis keeps one flag per (site, kind,
-- team, step, manager) and reopens it when the condition recurs. Read per site, filtered by
-- status, hence ORDER BY (site, flag_id).
CREATE TABLE IF NOT EXISTS flags
(
    flag_id      UUID,
    site         String,
    kind         LowCardinality(String) COMMENT 'slow, fast or systemic',
    team         String,
    step         String,
    manager      String   COMMENT 'empty for a systemic flag',
    managers     Array(String) COMMENT 'the slow managers of a systemic flag',
    status       LowCardinality(String) COMMENT 'open, acknowledged, coaching, resolved, dismissed',
    opened_at    DateTime64(3, 'UTC'),
    updated_at   DateTime64(3, 'UTC'),
    resolved_at  Nullable(DateTime64(3, 'UTC')),
    window_start Date,
    window_end   Date,
    n            UInt32,
    median_ms    Float64,
    min_ms       UInt32,
    reference_ms UInt32,
    max_ms       UInt32,
    q_value      Nullable(Float64),
    start_date   Nullable(Date),
    periods_in_drawdown UInt8,
    minutes_lost_per_week Float64,
    severity     UInt32,
    reasons      Array(String),
    periods_without_condition UInt8,
    last_period  Date     COMMENT 'the weekly period the condition was last evaluated for',
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site, flag_id);

-- Every change of a flag's status: who (a user, or "analysis"), when, why. The time from open to
-- resolved, a reported KPI, is read from here.
CREATE TABLE IF NOT EXISTS flag_events
(
    flag_id     UUID,
    site        String,
    at          DateTime64(3, 'UTC') DEFAULT now64(3),
    actor       String,
    from_status LowCardinality(String),
    to_status   LowCardinality(String),
    reason      String
)
ENGINE = MergeTree
ORDER BY (site, flag_id, at);
