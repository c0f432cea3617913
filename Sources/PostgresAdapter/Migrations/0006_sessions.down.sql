-- Every session and refresh token is gone: their owners log in again.
DROP TABLE identity_session_digests;
DROP TABLE identity_sessions;
