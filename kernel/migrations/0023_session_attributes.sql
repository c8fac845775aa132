-- Session attributes (case mix): the few low-cardinality values the CRM attaches to a service
-- session, e.g. {'segment': 'vip', 'channel': 'phone'}. The process definition declares which
-- names and values are allowed (kernel/processes.py); the collector refuses any other, so the map
-- never holds free text. Set on the `start` event only; an `end` event keeps the empty default.
-- Map(LowCardinality(String), LowCardinality(String)): a handful of distinct keys and values per
-- site, so both sides dictionary-encode to a few bytes per row.
ALTER TABLE session_events ADD COLUMN IF NOT EXISTS attributes Map(LowCardinality(String), LowCardinality(String)) DEFAULT map() COMMENT 'declared session attributes, on the start event' AFTER outcome;

-- The view gains the start event's attributes. A session without them (or one whose start event
-- was never seen) reads an empty map, its own stratum.
CREATE OR REPLACE VIEW service_sessions AS
SELECT site, session_id,
       any(manager) AS manager,
       any(customer) AS customer,
       any(process) AS process,
       minIf(at, action = 'start') AS started_at,
       maxIf(at, action = 'end') AS ended_at,
       countIf(action = 'end') > 0 AS ended,
       argMaxIf(outcome, at, action = 'end') AS outcome,
       argMinIf(attributes, at, action = 'start') AS attributes
FROM session_events FINAL
GROUP BY site, session_id;
