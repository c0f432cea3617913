-- Accounts. The email is stored canonical (trimmed, NFKC, lower-cased) and is unique.
CREATE TABLE identity_users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL,
    name          text        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       integer     NOT NULL
);
CREATE UNIQUE INDEX identity_users_email_key ON identity_users (email);

-- Transactional outbox: written in the same transaction as the change it describes.
CREATE TABLE identity_outbox (
    sequence    bigserial   PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    user_id     uuid        NOT NULL,
    type        text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    data        jsonb       NOT NULL
);

-- Revoked tokens, by jti, until the token would have expired anyway.
CREATE TABLE identity_revoked_tokens (
    jti        text        PRIMARY KEY,
    user_id    uuid        NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX identity_revoked_tokens_expires_at ON identity_revoked_tokens (expires_at);

-- Per-user cut-off: tokens issued at or before cutoff_ms (epoch milliseconds) are revoked.
CREATE TABLE identity_token_cutoffs (
    user_id    uuid        PRIMARY KEY,
    cutoff_ms  bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX identity_token_cutoffs_expires_at ON identity_token_cutoffs (expires_at);

-- Commands already applied, so that a redelivered command is applied once.
CREATE TABLE identity_processed_messages (
    message_id   text        PRIMARY KEY,
    processed_at timestamptz NOT NULL
);
CREATE INDEX identity_processed_messages_processed_at ON identity_processed_messages (processed_at);
