-- Sessions (contract §9): one per login. Refresh tokens are kept as digests only; grace_blob
-- is the current pair sealed under a key derived from the token just replaced, which the
-- database does not hold. A session is open while ended_ms is NULL and neither its idle
-- (last_used_ms) nor its absolute (created_ms) lifetime has passed. account_version is the
-- account's version read with the checked password at the login, then at each refresh. A
-- session's events go to identity_outbox in the transaction of its change.
CREATE TABLE identity_sessions (
    id              TEXT    PRIMARY KEY,
    user_id         TEXT    NOT NULL,
    created_ms      INTEGER NOT NULL,
    last_used_ms    INTEGER NOT NULL,
    user_agent      TEXT,
    client_address  TEXT,
    account_version INTEGER NOT NULL,
    generation      INTEGER NOT NULL,
    refresh_digest  BLOB    NOT NULL UNIQUE,
    previous_digest BLOB,
    rotated_ms      INTEGER,
    grace_blob      BLOB,
    ended_ms        INTEGER,
    end_reason      TEXT
);
CREATE INDEX identity_sessions_user ON identity_sessions (user_id, created_ms);
CREATE INDEX identity_sessions_last_used ON identity_sessions (last_used_ms);
CREATE INDEX identity_sessions_created ON identity_sessions (created_ms);

-- The digests a session's rotations replaced (the one just replaced included), newest kept,
-- so that a replayed older token is recognised as a reuse. `generation` is the session's
-- generation while the digest was current. Deleted with their session.
CREATE TABLE identity_session_digests (
    digest     BLOB    PRIMARY KEY,
    session_id TEXT    NOT NULL,
    generation INTEGER NOT NULL
);
CREATE INDEX identity_session_digests_session ON identity_session_digests (session_id, generation);
