-- Accounts. The email is stored canonical (trimmed, NFKC, lower-cased) and is unique.
-- Instants are whole epoch milliseconds, the precision of every instant Identity keeps.
CREATE TABLE identity_users (
    id            TEXT    PRIMARY KEY,
    email         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    version       INTEGER NOT NULL
);
CREATE UNIQUE INDEX identity_users_email_key ON identity_users (email);

-- Transactional outbox: written in the same transaction as the change it describes.
CREATE TABLE identity_outbox (
    sequence    INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL UNIQUE,
    user_id     TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    occurred_ms INTEGER NOT NULL,
    data        TEXT    NOT NULL
);

-- Revoked tokens, by jti, until the token would have expired anyway.
CREATE TABLE identity_revoked_tokens (
    jti        TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX identity_revoked_tokens_expires ON identity_revoked_tokens (expires_ms);

-- Per-user cut-off: tokens issued at or before cutoff_ms are revoked.
CREATE TABLE identity_token_cutoffs (
    user_id    TEXT    PRIMARY KEY,
    cutoff_ms  INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX identity_token_cutoffs_expires ON identity_token_cutoffs (expires_ms);

-- Commands already applied, so that a redelivered command is applied once.
CREATE TABLE identity_processed_messages (
    message_id   TEXT    PRIMARY KEY,
    processed_ms INTEGER NOT NULL
);

-- Failed logins per key ("email:<canonical email>" or "client:<address>").
CREATE TABLE identity_login_failures (
    key       TEXT    NOT NULL,
    failed_ms INTEGER NOT NULL
);
CREATE INDEX identity_login_failures_key ON identity_login_failures (key, failed_ms);
