-- Sites (CRM deployments allowed to send events) and the audit log.
--
-- sites is tiny and read whole into the collector's memory every few seconds; a change is a
-- new row with a higher version (ReplacingMergeTree), so history stays append-only and
-- `FINAL` gives the current state. ORDER BY name: names are unique.
CREATE TABLE IF NOT EXISTS sites
(
    name             String,
    key              String   COMMENT 'public ingest key, sits in the tracker snippet',
    secret           String   COMMENT 'HMAC key for signed identity; never leaves the backend',
    salt             String   COMMENT 'per-site salt for hashing customer references in the browser',
    origins          Array(String),
    require_identity Bool,
    enabled          Bool,
    created_at       DateTime64(3, 'UTC'),
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY name;

-- Who changed what, when and why. Append-only; read newest first, filtered by time range.
CREATE TABLE IF NOT EXISTS audit_log
(
    at      DateTime64(3, 'UTC') DEFAULT now64(3),
    actor   String   COMMENT 'user name, or cli:<os user> for commands run on the host',
    action  LowCardinality(String) COMMENT 'e.g. site.add, site.disable, band.set',
    object  String   COMMENT 'what was changed, e.g. the site name',
    reason  String,
    details String   COMMENT 'JSON with the values before and after'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, action);
