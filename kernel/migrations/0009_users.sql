-- Accounts and API tokens.
--
-- users: one row per version of an account (ReplacingMergeTree(version)); `FINAL` gives the
-- current state. Passwords are stored only as Argon2id hashes. Tiny; read by name.
CREATE TABLE IF NOT EXISTS users
(
    name          String,
    role          LowCardinality(String) COMMENT 'admin, director, trainer or manager',
    teams         Array(String) COMMENT 'a director: the teams they lead; a manager: their team',
    manager_id    String   COMMENT 'a manager account: the id the tracker reports for them',
    password_hash String   COMMENT 'Argon2id',
    language      LowCardinality(String),
    disabled      Bool,
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY name;

-- API tokens for scripts: only a SHA-256 of the token is kept; the token is shown once.
CREATE TABLE IF NOT EXISTS api_tokens
(
    token_hash String,
    name       String,
    user       String,
    created_at DateTime64(3, 'UTC') DEFAULT now64(3),
    revoked    Bool,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY token_hash;
