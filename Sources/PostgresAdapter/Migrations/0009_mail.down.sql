-- Every account token and every mail not yet delivered is gone (their owners ask again), and
-- accounts forget whether their email was verified.
DROP TABLE identity_mail_outbox;
DROP TABLE identity_account_tokens;
ALTER TABLE identity_users DROP COLUMN email_verified;
