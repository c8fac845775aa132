-- What an hour of a manager's time costs a site, so the overview can put the hours lost into money.
-- Optional: without it (NULL) pages show hours only. `currency` is an ISO 4217 code ('' when unset).
ALTER TABLE sites ADD COLUMN IF NOT EXISTS cost_per_hour Nullable(Float64) COMMENT 'cost of an hour of a manager''s time; NULL: not set' AFTER pseudonym_key;
ALTER TABLE sites ADD COLUMN IF NOT EXISTS currency LowCardinality(String) DEFAULT '' COMMENT 'ISO 4217 code of cost_per_hour' AFTER cost_per_hour;
