DROP TABLE identity_processed_messages;
DROP TABLE identity_token_cutoffs;
DROP TABLE identity_revoked_tokens;
DROP TABLE identity_outbox;
DROP TABLE identity_users;
