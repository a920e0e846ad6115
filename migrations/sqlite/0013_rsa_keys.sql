-- deputy SQLite schema 13 (PostgreSQL schema 3): an RSA key beside each
-- P-256 key (issue 14; OIDC Core §15.1: an OP must be able to sign ID
-- tokens RS256). A key row is either a P-256 key (x, y) or an RSA key
-- (n, e) that names the P-256 key of its generation (ec_kid), whose life
-- cycle it follows; at most one RSA key per generation.
--
-- SQLite cannot drop NOT NULL from x and y: the table is rebuilt (deputy on
-- SQLite keeps its keys in keys_dir, so it is empty, but any rows move).
-- Columns stay in PostgreSQL's order: the new ones last.

CREATE TABLE signing_keys_new (
    kid                TEXT NOT NULL PRIMARY KEY, -- RFC 7638 thumbprint of the public key
    alg                TEXT NOT NULL,             -- JWS algorithm, ES256 or RS256
    serial             INTEGER NOT NULL UNIQUE,   -- creation order (ns since the epoch)
    created_at         INTEGER NOT NULL,
    activates_at       INTEGER NOT NULL,
    public_pem         TEXT NOT NULL,
    x                  TEXT,                      -- base64url P-256 coordinates (ES256)
    y                  TEXT,
    sealed_private_key BLOB NOT NULL,             -- PKCS#8, sealed by deputy
    n                  TEXT,                      -- base64url RSA modulus and exponent (RS256)
    e                  TEXT,
    ec_kid             TEXT,                      -- RS256: the P-256 key of its generation
    CHECK ((alg = 'ES256' AND x IS NOT NULL AND y IS NOT NULL
                AND n IS NULL AND e IS NULL AND ec_kid IS NULL)
        OR (alg = 'RS256' AND n IS NOT NULL AND e IS NOT NULL AND ec_kid IS NOT NULL
                AND x IS NULL AND y IS NULL))
) STRICT, WITHOUT ROWID;

INSERT INTO signing_keys_new (kid, alg, serial, created_at, activates_at, public_pem, x, y,
                              sealed_private_key)
    SELECT kid, alg, serial, created_at, activates_at, public_pem, x, y, sealed_private_key
    FROM signing_keys;
DROP TABLE signing_keys;
ALTER TABLE signing_keys_new RENAME TO signing_keys;

CREATE UNIQUE INDEX signing_keys_one_rsa_per_generation ON signing_keys (ec_kid);
