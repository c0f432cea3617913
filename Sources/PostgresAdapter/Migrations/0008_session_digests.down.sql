-- identity_session_digests keeps replaced digests only again, and the current one is unique
-- on the session row.
ALTER TABLE identity_sessions RESET (fillfactor);
DELETE FROM identity_session_digests d USING identity_sessions s WHERE d.digest = s.refresh_digest;
CREATE UNIQUE INDEX identity_sessions_refresh_digest_key ON identity_sessions (refresh_digest);
