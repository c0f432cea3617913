-- Signing key pairs (contract §10), shared by every instance. The private key is stored
-- sealed (AES-GCM under a key-encryption key the database does not hold): opaque bytes,
-- empty once the key is gone. retired_at and published_until are set once the key is retired.
CREATE TABLE identity_signing_keys (
    kid                text        PRIMARY KEY,
    algorithm          text        NOT NULL,
    public_key         bytea       NOT NULL,
    sealed_private_key bytea       NOT NULL,
    state              text        NOT NULL CHECK (state IN ('next', 'active', 'retired', 'gone')),
    created_at         timestamptz NOT NULL,
    activates_at       timestamptz NOT NULL,
    retired_at         timestamptz,
    published_until    timestamptz
);

-- The key set's revision, one row. A commit is a compare-and-swap on it:
-- UPDATE … SET revision = revision + 1 WHERE revision = <the one read>, first in the
-- transaction that writes the keys. Of two commits on one revision, the second waits for the
-- first's row lock, then finds the revision moved and updates nothing: it changes nothing.
CREATE TABLE identity_signing_key_revision (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    revision bigint  NOT NULL
);
INSERT INTO identity_signing_key_revision (revision) VALUES (0);
