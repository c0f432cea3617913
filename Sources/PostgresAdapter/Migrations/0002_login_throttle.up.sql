-- Failed logins per key ("email:<canonical email>" or "client:<address>"), shared by every
-- instance. At most the limit's number of rows per key are kept; older ones are purged.
CREATE TABLE identity_login_failures (
    key       text        NOT NULL,
    failed_at timestamptz NOT NULL
);
CREATE INDEX identity_login_failures_key_failed_at ON identity_login_failures (key, failed_at);
CREATE INDEX identity_login_failures_failed_at ON identity_login_failures (failed_at);
