-- Teams and the time bands of each step.
--
-- team_members maps a tracked manager id (as the tracker reports it) to a team of a site. A
-- change is a new row with a higher version (ReplacingMergeTree): `FINAL` gives the current
-- team of every manager. Read whole per site, hence ORDER BY (site, manager).
CREATE TABLE IF NOT EXISTS team_members
(
    site    String,
    manager String,
    team    String   COMMENT 'empty: the manager left every team',
    version UInt64,
    changed_by String,
    changed_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site, manager);

CREATE TABLE IF NOT EXISTS teams
(
    site       String,
    name       String,
    title      String,
    version    UInt64,
    created_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site, name);

-- Bands: the minimum, reference and maximum time of a step, for everyone (team '') or one team.
-- Append-only and versioned by the date they take effect: the analysis of a period uses the
-- version in force then (the latest effective_from on or before the day, a team's own band
-- before the default). Tiny; read per site, hence ORDER BY (site, step, team, effective_from).
CREATE TABLE IF NOT EXISTS bands
(
    site           String,
    step           String,
    team           String   COMMENT 'empty: the default for every team',
    min_ms         UInt32,
    reference_ms   UInt32,
    max_ms         UInt32,
    effective_from Date,
    set_at         DateTime64(3, 'UTC') DEFAULT now64(3),
    set_by         String,
    reason         String
)
ENGINE = MergeTree
ORDER BY (site, step, team, effective_from, set_at);
