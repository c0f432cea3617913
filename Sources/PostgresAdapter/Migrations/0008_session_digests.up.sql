-- A rotation becomes a HOT update (issue 16): the session row no longer has an index on a
-- column a rotation changes. Every digest a session issued, its current one included, is kept
-- in identity_session_digests (whose primary key keeps digests unique), so the unique index
-- on identity_sessions.refresh_digest goes; a rotation finds its row through the digest's
-- session_id and compares refresh_digest on the row itself, then records the new digest.
-- Before: a rotation added an entry to each of the three session indexes and two for the
-- replaced digest; now two, for the new digest.
INSERT INTO identity_session_digests (digest, session_id, generation)
SELECT refresh_digest, id, generation FROM identity_sessions;
DROP INDEX identity_sessions_refresh_digest_key;
-- Room on each page for the row's next versions, so that its updates stay on the page (HOT).
ALTER TABLE identity_sessions SET (fillfactor = 50);
