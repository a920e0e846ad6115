-- deputy PostgreSQL schema 3 (SQLite schema 13): an RSA key beside each
-- P-256 key (issue 14; OIDC Core §15.1: an OP must be able to sign ID
-- tokens RS256). A key row is either a P-256 key (x, y) or an RSA key
-- (n, e) that names the P-256 key of its generation (ec_kid), whose life
-- cycle it follows; at most one RSA key per generation, so instances
-- starting at once cannot give one generation two RSA keys.

ALTER TABLE signing_keys ALTER COLUMN x DROP NOT NULL;
ALTER TABLE signing_keys ALTER COLUMN y DROP NOT NULL;
ALTER TABLE signing_keys ADD COLUMN n TEXT;      -- base64url RSA modulus and exponent (RS256)
ALTER TABLE signing_keys ADD COLUMN e TEXT;
ALTER TABLE signing_keys ADD COLUMN ec_kid TEXT; -- RS256: the P-256 key of its generation
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_one_kind CHECK (
       (alg = 'ES256' AND x IS NOT NULL AND y IS NOT NULL
            AND n IS NULL AND e IS NULL AND ec_kid IS NULL)
    OR (alg = 'RS256' AND n IS NOT NULL AND e IS NOT NULL AND ec_kid IS NOT NULL
            AND x IS NULL AND y IS NULL));

CREATE UNIQUE INDEX signing_keys_one_rsa_per_generation ON signing_keys (ec_kid);
