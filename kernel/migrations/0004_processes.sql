-- Process definitions: the steps of serving a client on one site, and their URL rules.
--
-- One row per version, never updated: the history of a site's process stays readable (the
-- analysis of a past period uses the steps as they were). Tiny table, read by site, newest
-- version first, hence ORDER BY (site, version). The definition is JSON, as loaded from TOML.
CREATE TABLE IF NOT EXISTS processes
(
    site       String,
    process    String,
    version    UInt32,
    definition String COMMENT 'JSON: process, title, tracker options, ordered steps with patterns',
    loaded_at  DateTime64(3, 'UTC') DEFAULT now64(3),
    loaded_by  String,
    reason     String
)
ENGINE = MergeTree
ORDER BY (site, version);
