-- A password change or a deletion revokes the tokens that carry an older account version
-- (the token's `ver` claim), not those issued before an instant: no clock is compared.
-- Existing cut-offs become "below the account's current version" (every token issued before
-- this migration carries no version, so counts as 0): those accounts' older tokens stay revoked.
CREATE TABLE identity_account_cutoffs (
    user_id       TEXT    PRIMARY KEY,
    below_version INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL
);
CREATE INDEX identity_account_cutoffs_expires ON identity_account_cutoffs (expires_ms);
INSERT INTO identity_account_cutoffs (user_id, below_version, expires_ms)
    SELECT c.user_id, COALESCE(u.version, 9223372036854775807), c.expires_ms
    FROM identity_token_cutoffs c LEFT JOIN identity_users u ON u.id = c.user_id;
DROP TABLE identity_token_cutoffs;
