-- A rotation writes one digest entry and nothing else (issue 16): the foreign key from
-- identity_session_digests to identity_sessions goes, since its check (a trigger running a
-- query) was a tenth of PostgreSQL's work per refresh. The session store deletes a session's
-- digests itself when it purges the session, and trims each session's kept digests there too.
ALTER TABLE identity_session_digests DROP CONSTRAINT identity_session_digests_session_id_fkey;
