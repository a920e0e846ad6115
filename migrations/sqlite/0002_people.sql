-- deputy schema 2: people signing in — sessions, pending authorization
-- interactions, remembered consent, authorization codes and refresh tokens.

-- Login sessions. Only the SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    auth_time  INTEGER NOT NULL,
    amr        TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

-- An authorization request waiting for the person to log in or consent.
-- Bound to the browser that started it (hash of the browser cookie) and
-- protected by a CSRF token that every form must echo.
CREATE TABLE interactions (
    id           TEXT PRIMARY KEY,
    browser_hash TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    request      TEXT NOT NULL,            -- the validated authorization request (JSON)
    login_done   INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);

-- Consent remembered per person and client: the scopes they agreed to.
CREATE TABLE consents (
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- RFC 6749 §4.1.2: single use, short lived, bound to client, redirect_uri,
-- PKCE challenge, nonce, scope and resource. Stored by SHA-256 only.
CREATE TABLE authorization_codes (
    code_hash          TEXT PRIMARY KEY,
    client_id          TEXT NOT NULL,
    user_id            TEXT NOT NULL,
    grant_id           TEXT NOT NULL,
    redirect_uri       TEXT NOT NULL,
    redirect_uri_sent  INTEGER NOT NULL,    -- was redirect_uri in the request (RFC 6749 §4.1.3)
    code_challenge     TEXT NOT NULL,
    scope              TEXT NOT NULL,
    nonce              TEXT,
    resource           TEXT NOT NULL,
    auth_time          INTEGER NOT NULL,
    amr                TEXT NOT NULL,
    issued_at          INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    consumed_at        INTEGER
);

-- Refresh tokens (opaque, stored by SHA-256), each in one family = one grant.
CREATE TABLE refresh_tokens (
    token_hash          TEXT PRIMARY KEY,
    jti                 TEXT NOT NULL UNIQUE,
    family_id           TEXT NOT NULL,
    client_id           TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    scope               TEXT NOT NULL,      -- the family's consented scope
    resource            TEXT NOT NULL,
    auth_time           INTEGER NOT NULL,
    amr                 TEXT NOT NULL,
    issued_at           INTEGER NOT NULL,
    idle_expires_at     INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    consumed_at         INTEGER,
    consumed_by         TEXT,               -- client that consumed it
    successor_hash      TEXT,
    revoked_at          INTEGER
);
CREATE INDEX refresh_family ON refresh_tokens(family_id);

-- Server-side secrets that must survive restarts (e.g. the refresh-successor key).
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
