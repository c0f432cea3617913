DROP INDEX identity_login_failures_attempt;
-- Attempts in flight were counted as failures before this migration.
ALTER TABLE identity_login_failures DROP COLUMN attempt;
