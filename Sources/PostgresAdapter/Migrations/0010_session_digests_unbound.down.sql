-- The foreign key comes back; digests whose session is gone (none, unless a purge was cut
-- short) go first.
DELETE FROM identity_session_digests d WHERE NOT EXISTS (SELECT 1 FROM identity_sessions s WHERE s.id = d.session_id);
ALTER TABLE identity_session_digests ADD CONSTRAINT identity_session_digests_session_id_fkey
    FOREIGN KEY (session_id) REFERENCES identity_sessions (id) ON DELETE CASCADE;
