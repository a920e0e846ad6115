-- deputy PostgreSQL schema 2 (SQLite schema 12): what relying parties need
-- from a person and a client (issue 14). A person's address may be marked
-- verified by the operator; a client may ask for the profile/email claims
-- in its ID token (OIDC Core §5.4) and for the algorithm its ID tokens are
-- signed with (OIDC Registration `id_token_signed_response_alg`); a code
-- keeps the claims its request asked for in the ID token (OIDC Core §5.5,
-- the `claims` parameter's `id_token` member, a JSON list of names).

ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN id_token_claims BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN id_token_alg TEXT NOT NULL DEFAULT 'ES256'
    CHECK (id_token_alg IN ('ES256', 'RS256'));
ALTER TABLE authorization_codes ADD COLUMN requested_claims TEXT;
