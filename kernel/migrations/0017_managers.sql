-- The directory of managers: the name (and e-mail) of each manager id the tracker reports, per site.
--
-- A change is a new row with a higher version (ReplacingMergeTree): `FINAL` gives every manager's
-- current name. A few hundred rows per site, read whole per site by the pages (through
-- kernel/small_tables.py) and by the importer, hence ORDER BY (site, manager). No TTL: a name is
-- needed as long as the manager's figures and flags are kept.
CREATE TABLE IF NOT EXISTS managers
(
    site       String,
    manager    String   COMMENT 'the id the CRM reports to the tracker',
    name       String   COMMENT 'the name people read; empty: none known, the id is shown',
    email      String,
    version    UInt64,
    changed_by String,
    changed_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site, manager);
