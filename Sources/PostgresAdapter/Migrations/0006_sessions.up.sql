-- Sessions (contract §9): one per login. Refresh tokens are kept as digests only; grace_blob
-- is the current pair sealed under a key derived from the token just replaced, which the
-- database does not hold. A session is open while ended_at is NULL and neither its idle
-- (last_used_at) nor its absolute (created_at) lifetime has passed. account_version is the
-- account's version read with the checked password at the login, then at each refresh. A
-- session's events go to identity_outbox in the transaction of its change.
CREATE TABLE identity_sessions (
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL,
    created_at      timestamptz NOT NULL,
    last_used_at    timestamptz NOT NULL,
    user_agent      text,
    client_address  text,
    account_version bigint      NOT NULL,
    generation      bigint      NOT NULL,
    refresh_digest  bytea       NOT NULL,
    previous_digest bytea,
    rotated_at      timestamptz,
    grace_blob      bytea,
    ended_at        timestamptz,
    end_reason      text CHECK (end_reason IN ('logout', 'revoked', 'reuse', 'password_change', 'account_deleted')),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
-- A rotation is a compare-and-swap on this index: UPDATE … WHERE refresh_digest = the presented one.
CREATE UNIQUE INDEX identity_sessions_refresh_digest_key ON identity_sessions (refresh_digest);
CREATE INDEX identity_sessions_user_id ON identity_sessions (user_id, created_at DESC);
-- No index on last_used_at or created_at: every rotation changes the row's digest and
-- last_used_at, so it is never a HOT update and every index takes a new entry per refresh.
-- The purge, every ten minutes, reads the table instead.

-- The digests a session's rotations replaced (the one just replaced included), the newest
-- kept, so that a replayed older token is recognised as a reuse. `generation` is the
-- session's generation while the digest was current. Deleted with their session.
CREATE TABLE identity_session_digests (
    digest     bytea  PRIMARY KEY,
    session_id uuid   NOT NULL REFERENCES identity_sessions (id) ON DELETE CASCADE,
    generation bigint NOT NULL
);
CREATE INDEX identity_session_digests_session_id ON identity_session_digests (session_id, generation);
