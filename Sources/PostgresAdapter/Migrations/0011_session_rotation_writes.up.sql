-- A rotation writes less (issue 16).
--
-- identity_session_digests is keyed by (session_id, generation) instead of by the digest,
-- with no second index: a rotation adds one index entry, at the end of its session's range,
-- where it added two, one of them at a random place. Digests are looked up within their
-- session (the refresh token names it), so two sessions that drew one digest (never
-- expected of 256 random bits) would not meet; nothing relies on the digest's uniqueness.
ALTER TABLE identity_session_digests DROP CONSTRAINT identity_session_digests_pkey;
DROP INDEX identity_session_digests_session_id;
ALTER TABLE identity_session_digests ADD PRIMARY KEY (session_id, generation);

-- The two CHECKs on a session's end become a trigger that fires only on the writes that set
-- ended_at or end_reason (an opening, an end): PostgreSQL evaluated the CHECKs, parsing them
-- anew, on every rotation, which never touches either column.
ALTER TABLE identity_sessions DROP CONSTRAINT identity_sessions_check;
ALTER TABLE identity_sessions DROP CONSTRAINT identity_sessions_end_reason_check;
CREATE FUNCTION identity_sessions_check_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.ended_at IS NULL) <> (NEW.end_reason IS NULL)
       OR NEW.end_reason NOT IN ('logout', 'revoked', 'reuse', 'password_change', 'account_deleted') THEN
        RAISE EXCEPTION 'identity_sessions: ended_at and end_reason are set together, end_reason one of the contract''s'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER identity_sessions_check_end BEFORE INSERT OR UPDATE OF ended_at, end_reason ON identity_sessions
    FOR EACH ROW EXECUTE FUNCTION identity_sessions_check_end();
