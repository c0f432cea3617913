-- An attempt in flight is a row with its attempt id; a failure has none. Only failures count
-- against an email, and an attempt in flight holds the email's turn (see PostgresLoginThrottle).
ALTER TABLE identity_login_failures ADD COLUMN attempt uuid;
CREATE INDEX identity_login_failures_attempt ON identity_login_failures (attempt) WHERE attempt IS NOT NULL;
