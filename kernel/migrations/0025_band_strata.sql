-- Bands per kind of client: a band may hold for the sessions of one declared attribute value only
-- (`stratum` 'segment=vip'; '' = every kind, as before). Versions of the same site, step, team and
-- stratum supersede each other by effective_from, as the others do. The analysis takes a kind's
-- band as how long that kind of client should take (analysis/strata.py). The table stays tiny and
-- is read whole per site, so the sorting key is left as it is.
ALTER TABLE bands ADD COLUMN IF NOT EXISTS stratum LowCardinality(String) DEFAULT '' COMMENT 'the kind of client: name=value of a declared session attribute; empty: every kind' AFTER team;
