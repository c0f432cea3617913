-- Every signing key pair is gone: a build with key pairs makes new ones, and the tokens the
-- old ones signed no longer verify (their owners log in again).
DROP TABLE identity_signing_key_revision;
DROP TABLE identity_signing_keys;
