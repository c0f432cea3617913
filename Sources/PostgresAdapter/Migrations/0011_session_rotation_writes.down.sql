-- The CHECKs come back in place of the trigger, and the digests are keyed by the digest again
-- (of two sessions that drew one digest, never expected, the entry of the later generation
-- stays), with the index on (session_id, generation).
DROP TRIGGER identity_sessions_check_end ON identity_sessions;
DROP FUNCTION identity_sessions_check_end();
ALTER TABLE identity_sessions ADD CONSTRAINT identity_sessions_end_reason_check
    CHECK (end_reason IN ('logout', 'revoked', 'reuse', 'password_change', 'account_deleted'));
ALTER TABLE identity_sessions ADD CONSTRAINT identity_sessions_check CHECK ((ended_at IS NULL) = (end_reason IS NULL));
ALTER TABLE identity_session_digests DROP CONSTRAINT identity_session_digests_pkey;
DELETE FROM identity_session_digests a USING identity_session_digests b
    WHERE a.digest = b.digest AND (a.generation, a.session_id) < (b.generation, b.session_id);
ALTER TABLE identity_session_digests ADD PRIMARY KEY (digest);
CREATE INDEX identity_session_digests_session_id ON identity_session_digests (session_id, generation);
