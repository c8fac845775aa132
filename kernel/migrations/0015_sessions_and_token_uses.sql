-- Login sessions, so that signing out ends a login on the server and not only in the browser.
--
-- The signed login cookie carries the session's id; a login is accepted while the session's current
-- row says it is open. One row per version of a session (ReplacingMergeTree(version)): one when the
-- user signs in, another with `ended` when they sign out or the account is disabled; `FINAL` gives
-- the current state. Read by id (ORDER BY id), and by user only when an account's sessions are all
-- ended (a small table: a row or two per login). A session's rows go a month after it began (TTL),
-- later than the longest login (STEPWATCH_SESSION_HOURS is at most 30 days).
CREATE TABLE IF NOT EXISTS sessions
(
    id         String COMMENT 'random, in the signed login cookie',
    user       String,
    started_at DateTime64(3, 'UTC'),
    ended      Bool,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id
TTL toDateTime(started_at) + INTERVAL 31 DAY;

-- When each API token was last used. Kept apart from api_tokens so that recording a use can never
-- write over a revocation made at the same moment. A row at most once a minute per token and
-- process; the table keeps the latest per token (ReplacingMergeTree(used_at)); read with max().
CREATE TABLE IF NOT EXISTS api_token_uses
(
    token_hash String,
    used_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(used_at)
ORDER BY token_hash;
