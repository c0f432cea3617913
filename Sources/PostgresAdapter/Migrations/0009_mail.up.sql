-- Contract §11: email verification, password reset and the mail outbox.
-- Accounts registered before this migration read as unverified.
ALTER TABLE identity_users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

-- One-time account tokens, kept as their SHA-256 digest only. A token works while it is here,
-- of its purpose, for its account and before expires_at; the write it allows deletes it in its
-- transaction (DELETE … RETURNING), so of two uses at once exactly one finds it. Deleted with
-- their account. Instants are whole milliseconds.
CREATE TABLE identity_account_tokens (
    digest     bytea       PRIMARY KEY,
    purpose    text        NOT NULL CHECK (purpose IN ('email_verification', 'password_reset')),
    user_id    uuid        NOT NULL,
    email      text        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX identity_account_tokens_user ON identity_account_tokens (user_id, purpose);
-- The purge of expired tokens.
CREATE INDEX identity_account_tokens_expiry ON identity_account_tokens (expires_at);

-- Mail owed, committed with the change that owes it and delivered later. A mail is pending
-- while sent_at and failed_at are NULL; it is due once next_attempt_at has come and no claim
-- holds it (claimed_until NULL or past). attempts counts failed attempts. sealed_token is the
-- token sealed under a key the database does not hold, cleared once the mail is sent or given
-- up. Rows stay after delivery: the reset limit counts them by (kind, recipient, created_at).
CREATE TABLE identity_mail_outbox (
    id              uuid        PRIMARY KEY,
    kind            text        NOT NULL,
    user_id         uuid        NOT NULL,
    recipient       text        NOT NULL,
    recipient_name  text        NOT NULL,
    sealed_token    text,
    new_email       text,
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    claimed_until   timestamptz,
    sent_at         timestamptz,
    failed_at       timestamptz,
    last_error      text
);
-- Claims walk the pending mail oldest first.
CREATE INDEX identity_mail_outbox_pending ON identity_mail_outbox (created_at, id) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX identity_mail_outbox_limit ON identity_mail_outbox (kind, recipient, created_at);
CREATE INDEX identity_mail_outbox_user ON identity_mail_outbox (user_id);
CREATE INDEX identity_mail_outbox_failed ON identity_mail_outbox (failed_at) WHERE failed_at IS NOT NULL;
