-- Contract §11: email verification, password reset and the mail outbox.
-- Accounts registered before this migration read as unverified.
ALTER TABLE identity_users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;

-- One-time account tokens, kept as their SHA-256 digest only. A token works while it is here,
-- of its purpose, for its account and before expires_ms; using it deletes it in the
-- transaction of the write it allows. Deleted with their account.
CREATE TABLE identity_account_tokens (
    digest     BLOB    PRIMARY KEY,
    purpose    TEXT    NOT NULL CHECK (purpose IN ('email_verification', 'password_reset')),
    user_id    TEXT    NOT NULL,
    email      TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX identity_account_tokens_user ON identity_account_tokens (user_id, purpose);
-- The purge of expired tokens.
CREATE INDEX identity_account_tokens_expiry ON identity_account_tokens (expires_ms);

-- Mail owed, committed with the change that owes it and delivered later. A mail is pending
-- while sent_ms and failed_ms are NULL; it is due once next_attempt_ms has come and no claim
-- holds it (claimed_until_ms NULL or past). attempts counts failed attempts. sealed_token is
-- the token sealed under a key the database does not hold, cleared once the mail is sent or
-- given up. Rows stay after delivery: the reset limit counts them by (kind, recipient, created_ms).
CREATE TABLE identity_mail_outbox (
    id               TEXT    PRIMARY KEY,
    kind             TEXT    NOT NULL,
    user_id          TEXT    NOT NULL,
    recipient        TEXT    NOT NULL,
    recipient_name   TEXT    NOT NULL,
    sealed_token     TEXT,
    new_email        TEXT,
    created_ms       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    claimed_until_ms INTEGER,
    sent_ms          INTEGER,
    failed_ms        INTEGER,
    last_error       TEXT
);
CREATE INDEX identity_mail_outbox_due ON identity_mail_outbox (next_attempt_ms) WHERE sent_ms IS NULL AND failed_ms IS NULL;
CREATE INDEX identity_mail_outbox_limit ON identity_mail_outbox (kind, recipient, created_ms);
CREATE INDEX identity_mail_outbox_user ON identity_mail_outbox (user_id);
CREATE INDEX identity_mail_outbox_failed ON identity_mail_outbox (failed_ms) WHERE failed_ms IS NOT NULL;
