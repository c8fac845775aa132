-- Each session's declared attributes (its start event's `attributes`) on its rows of session_steps,
-- so that the like-for-like analysis reads every session's kind of client with its time, in one
-- read, instead of joining the start events by session id on every run (at 10 million visits that
-- join was half of an analysis run: docs/performance.md, "Like for like").
--
-- Written by the refresh (storage.refresh_session_steps), which also recomputes the days of
-- sessions whose start event arrives after their visits' day was refreshed. Empty for a session
-- without attributes or without a start event.
-- One string per session, its attributes as name=value pairs sorted by name and joined by & (names
-- and values are [a-z0-9_-]): a LowCardinality column costs the refresh nothing measurable, where a
-- Map(LowCardinality(String), LowCardinality(String)) made the day's insert twice as long.
ALTER TABLE session_steps ADD COLUMN IF NOT EXISTS attributes LowCardinality(String) DEFAULT '' COMMENT 'the session''s declared attributes from its start event: name=value pairs sorted by name, joined by &' AFTER session_id;
-- The rows already there have none: the sites with attributes recompute their pre-aggregate once,
-- at their next refresh (a refresh recomputes every day received after the watermark).
DELETE FROM analysis_state WHERE site IN (SELECT DISTINCT toString(site) FROM session_events WHERE notEmpty(attributes));
