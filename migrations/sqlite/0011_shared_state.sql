-- deputy schema 11: state that instances sharing one database must share,
-- in the same tables as PostgreSQL's (migrations/postgres/), so the SQL that
-- reads and writes them is one for both engines. STRICT: a value of the wrong
-- type is refused instead of stored.

-- Signing keys as src/keys/file.rs knows them (KeyMeta and the key pair),
-- the private key only sealed by deputy (AES-256-GCM). With SQLite the keys
-- may stay in their directory; the table is here so both schemas are one.
CREATE TABLE signing_keys (
    kid                TEXT NOT NULL PRIMARY KEY, -- RFC 7638 thumbprint of the public key
    alg                TEXT NOT NULL,             -- JWS algorithm, ES256
    serial             INTEGER NOT NULL UNIQUE,   -- creation order (ns since the epoch)
    created_at         INTEGER NOT NULL,
    activates_at       INTEGER NOT NULL,
    public_pem         TEXT NOT NULL,
    x                  TEXT NOT NULL,             -- base64url P-256 coordinates
    y                  TEXT NOT NULL,
    sealed_private_key BLOB NOT NULL              -- PKCS#8, sealed by deputy
) STRICT, WITHOUT ROWID;

-- Failed logins per account, kept by the login throttle on both engines.
CREATE TABLE login_failures (
    account      TEXT NOT NULL PRIMARY KEY,       -- the key deputy derives from the user name
    failures     INTEGER NOT NULL CHECK (failures >= 0),
    last_failure INTEGER NOT NULL,
    locked_until INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX login_failures_last ON login_failures(last_failure);
