-- E-mail beside the webhook: the outbox carries a message's channel and, for an e-mail, its
-- address; accounts may have an address the weekly digests are sent to.
--
-- Query patterns are those of 0011: messages that are due are scanned a handful at a time; a digest
-- is looked up by its `object` (digest:<kind>:<site>:<account>:<ISO week>) before it is queued, so a
-- second run in the same week queues nothing. Existing rows are webhook messages (the default).
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS channel LowCardinality(String) DEFAULT 'webhook' COMMENT 'webhook or email' AFTER topic;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS recipient String DEFAULT '' COMMENT 'e-mail: the address; webhook: empty (the configured URL)' AFTER channel;
ALTER TABLE users ADD COLUMN IF NOT EXISTS email String DEFAULT '' COMMENT 'where digests are e-mailed; may be empty' AFTER language;
