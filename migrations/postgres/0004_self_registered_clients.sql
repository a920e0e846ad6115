-- deputy PostgreSQL schema 4 (SQLite schema 14): clients that register
-- themselves (issue 14). A client is registered by the operator (`deputy
-- client add`), described by its own metadata document at its client_id
-- URL (Client ID Metadata Documents: the row is deputy's cached copy,
-- fetched again after metadata_expires_at), or registered at /register
-- (RFC 7591; removed once unused for `registration_unused_ttl`). Any of
-- them can be blocked. Initial access tokens for /register are stored by
-- SHA-256 only.

ALTER TABLE clients ADD COLUMN registration TEXT NOT NULL DEFAULT 'operator'
    CHECK (registration IN ('operator', 'metadata_document', 'dynamic'));
ALTER TABLE clients ADD COLUMN client_uri TEXT;
ALTER TABLE clients ADD COLUMN logo_uri TEXT;
ALTER TABLE clients ADD COLUMN metadata_expires_at BIGINT;
ALTER TABLE clients ADD COLUMN blocked_at BIGINT;
ALTER TABLE clients ADD COLUMN last_used_at BIGINT;

CREATE TABLE registration_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,  -- SHA-256 of the initial access token
    created_at BIGINT NOT NULL,
    expires_at BIGINT,                     -- none: until used up
    max_uses   BIGINT CHECK (max_uses IS NULL OR max_uses > 0),
    uses       BIGINT NOT NULL DEFAULT 0 CHECK (uses >= 0)
);
