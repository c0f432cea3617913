-- Signing key pairs (contract §10). The private key is stored sealed (AES-GCM under a
-- key-encryption key the database does not hold): opaque bytes, empty once the key is gone.
-- Instants are whole epoch milliseconds; retired_ms and published_until_ms are set once the
-- key is retired.
CREATE TABLE identity_signing_keys (
    kid                TEXT    NOT NULL PRIMARY KEY,
    algorithm          TEXT    NOT NULL,
    public_key         BLOB    NOT NULL,
    sealed_private_key BLOB    NOT NULL,
    state              TEXT    NOT NULL CHECK (state IN ('next', 'active', 'retired', 'gone')),
    created_ms         INTEGER NOT NULL,
    activates_ms       INTEGER NOT NULL,
    retired_ms         INTEGER,
    published_until_ms INTEGER
);

-- The key set's revision, one row: a commit moves it on with
-- UPDATE … SET revision = revision + 1 WHERE revision = <the one read>, in the transaction
-- that writes the keys, and changes nothing when that updates no row.
CREATE TABLE identity_signing_key_revision (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO identity_signing_key_revision (id, revision) VALUES (1, 0);
