-- Context notes: a manager's own words on a week of a step ("trained a new colleague", "CRM outage")
-- or on one of their flags, which the people who see that manager's figures read next to them.
--
-- A note is written by the manager it is about and may be withdrawn by them: a change is a new row
-- with a higher version (ReplacingMergeTree), `deleted` marks a withdrawn note, `FINAL` gives every
-- note's current row. Pages read one manager's notes (the manager page, My figures) or the notes on
-- one step of a team's managers (the drawdown page), tens of rows: ORDER BY (site, manager, note_id).
-- The retention of the tracked data applies to notes as well (kernel/migrations RETENTION_TABLES).
CREATE TABLE IF NOT EXISTS notes
(
    site       String,
    note_id    String   COMMENT 'a UUID',
    manager    String   COMMENT 'the manager id the note is about (its author''s own)',
    step       String   COMMENT 'the process step the note is on; a flag''s step for a note on a flag',
    week       Nullable(Date) COMMENT 'the Monday of the week noted; NULL for a note on a flag',
    flag_id    String   COMMENT 'the flag noted; empty for a note on a week',
    text       String,
    author     String   COMMENT 'the account that wrote it',
    created_at DateTime64(3, 'UTC'),
    deleted    Bool     COMMENT 'withdrawn by its author',
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site, manager, note_id);
