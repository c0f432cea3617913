-- Revocations by account version, in one order, announced with their place in it.
--
-- A password change or a deletion revokes the tokens that carry an older account version
-- (their `ver` claim), never those issued before an instant: no clock is compared. Existing
-- cut-offs become "below the account's current version" (a token issued before this migration
-- carries no version and counts as 0), so those accounts' older tokens stay revoked.
--
-- Every revocation written gets the next number of identity_revocation_sequence (`seq`). The
-- counter's one row stays locked until the writing transaction ends, so revocations commit in
-- the order of their numbers, and a rolled back one hands its number back. Announcements and
-- heartbeats carry the numbers, so a listener that sees a gap, or a heartbeat ahead of what it
-- has, knows it missed something and catches up from the tables (`seq > what it has`).
CREATE TABLE identity_revocation_sequence (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    last bigint  NOT NULL
);
INSERT INTO identity_revocation_sequence (last) VALUES (0);

CREATE TABLE identity_account_cutoffs (
    user_id       uuid        PRIMARY KEY,
    below_version bigint      NOT NULL,
    expires_at    timestamptz NOT NULL,
    seq           bigint      NOT NULL DEFAULT 0
);
CREATE INDEX identity_account_cutoffs_expires_at ON identity_account_cutoffs (expires_at);
CREATE INDEX identity_account_cutoffs_seq ON identity_account_cutoffs (seq);
INSERT INTO identity_account_cutoffs (user_id, below_version, expires_at)
    SELECT c.user_id, COALESCE(u.version, 9223372036854775807), c.expires_at
    FROM identity_token_cutoffs c LEFT JOIN identity_users u ON u.id = c.user_id;
DROP TABLE identity_token_cutoffs;

ALTER TABLE identity_revoked_tokens ADD COLUMN seq bigint NOT NULL DEFAULT 0;
CREATE INDEX identity_revoked_tokens_seq ON identity_revoked_tokens (seq);

-- Numbers each written row. An upsert that finds its row is numbered once, by its update.
CREATE FUNCTION identity_number_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Nested: NEW has only its own table's columns, and a condition naming another's fails.
    IF TG_OP = 'INSERT' THEN
        IF TG_TABLE_NAME = 'identity_revoked_tokens' THEN
            IF EXISTS (SELECT 1 FROM identity_revoked_tokens WHERE jti = NEW.jti) THEN
                RETURN NEW;
            END IF;
        ELSIF EXISTS (SELECT 1 FROM identity_account_cutoffs WHERE user_id = NEW.user_id) THEN
            RETURN NEW;
        END IF;
    END IF;
    UPDATE identity_revocation_sequence SET last = last + 1 RETURNING last INTO NEW.seq;
    RETURN NEW;
END
$$;
CREATE TRIGGER identity_revoked_tokens_number BEFORE INSERT OR UPDATE ON identity_revoked_tokens
    FOR EACH ROW EXECUTE FUNCTION identity_number_revocation();
CREATE TRIGGER identity_account_cutoffs_number BEFORE INSERT OR UPDATE ON identity_account_cutoffs
    FOR EACH ROW EXECUTE FUNCTION identity_number_revocation();

-- The document of one revocation, as announced and as read when catching up.
CREATE FUNCTION identity_revocation_message(seq bigint, jti text, user_id uuid, below_version bigint, expires_at timestamptz)
    RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT json_strip_nulls(json_build_object(
        'seq', seq, 'jti', jti, 'user_id', user_id, 'below_version', below_version,
        'expires_at_ms', floor(extract(epoch FROM expires_at) * 1000)::bigint))::text
$$;

CREATE OR REPLACE FUNCTION identity_notify_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'identity_revoked_tokens' THEN
        PERFORM pg_notify('identity_revocations',
            identity_revocation_message(NEW.seq, NEW.jti, NEW.user_id, NULL, NEW.expires_at));
    ELSE
        PERFORM pg_notify('identity_revocations',
            identity_revocation_message(NEW.seq, NULL, NEW.user_id, NEW.below_version, NEW.expires_at));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER identity_account_cutoffs_notify AFTER INSERT OR UPDATE ON identity_account_cutoffs
    FOR EACH ROW EXECUTE FUNCTION identity_notify_revocation();

-- Rows from before this migration get their numbers now (through the trigger above), so a
-- cache that catches up from place 0 reads them.
UPDATE identity_revoked_tokens SET seq = seq;
UPDATE identity_account_cutoffs SET seq = seq;
