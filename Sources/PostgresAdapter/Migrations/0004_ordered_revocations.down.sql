DROP TRIGGER identity_account_cutoffs_notify ON identity_account_cutoffs;
DROP TRIGGER identity_account_cutoffs_number ON identity_account_cutoffs;
DROP TRIGGER identity_revoked_tokens_number ON identity_revoked_tokens;
DROP FUNCTION identity_number_revocation();
DROP INDEX identity_revoked_tokens_seq;
ALTER TABLE identity_revoked_tokens DROP COLUMN seq;
-- Times cannot be recovered from versions: every surviving cut-off revokes all tokens issued
-- up to the moment of the downgrade (the safe side).
CREATE TABLE identity_token_cutoffs (
    user_id    uuid        PRIMARY KEY,
    cutoff_ms  bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX identity_token_cutoffs_expires_at ON identity_token_cutoffs (expires_at);
INSERT INTO identity_token_cutoffs (user_id, cutoff_ms, expires_at)
    SELECT user_id, floor(extract(epoch FROM now()) * 1000)::bigint, expires_at FROM identity_account_cutoffs;
DROP TABLE identity_account_cutoffs;
CREATE OR REPLACE FUNCTION identity_notify_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    expires_ms bigint := floor(extract(epoch FROM NEW.expires_at) * 1000)::bigint;
BEGIN
    IF TG_TABLE_NAME = 'identity_revoked_tokens' THEN
        PERFORM pg_notify('identity_revocations',
            json_build_object('jti', NEW.jti, 'user_id', NEW.user_id, 'expires_at_ms', expires_ms)::text);
    ELSE
        PERFORM pg_notify('identity_revocations',
            json_build_object('user_id', NEW.user_id, 'cutoff_ms', NEW.cutoff_ms, 'expires_at_ms', expires_ms)::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER identity_token_cutoffs_notify AFTER INSERT OR UPDATE ON identity_token_cutoffs
    FOR EACH ROW EXECUTE FUNCTION identity_notify_revocation();
DROP FUNCTION identity_revocation_message(bigint, text, uuid, bigint, timestamptz);
DROP TABLE identity_revocation_sequence;
