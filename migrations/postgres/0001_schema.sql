-- deputy PostgreSQL schema 1: the schema SQLite reaches after its migrations
-- 1-11 (migrations/sqlite/), as one migration: there is no PostgreSQL history
-- to replay. Versions are counted per engine.
--
-- The same SQL must work on both engines, so table and column names and the
-- order of the columns are SQLite's. Every integer and timestamp is BIGINT
-- (deputy binds i64, which tokio-postgres only maps to int8); SQLite's 0/1
-- flags are BOOLEAN; JSON stays TEXT, byte for byte as deputy wrote it.
-- Changes after this one are new files, never edits of this one.

-- clients, resources, people, grants, every issued token, used client-assertion
-- ids, and the append-only audit trail (SQLite schema 1).

CREATE TABLE clients (
    id                        TEXT PRIMARY KEY,
    kind                      TEXT NOT NULL CHECK (kind IN ('app', 'service', 'agent')),
    name                      TEXT NOT NULL,
    auth_method               TEXT NOT NULL CHECK (auth_method IN
                                ('private_key_jwt', 'client_secret_basic', 'client_secret_post', 'none')),
    secret_hash               TEXT,          -- argon2id PHC string, secret clients only
    jwks                      TEXT,          -- registered JWK Set (JSON), private_key_jwt only
    jwks_uri                  TEXT,
    assertion_alg             TEXT NOT NULL DEFAULT 'ES256',
    redirect_uris             TEXT NOT NULL DEFAULT '[]',
    post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]',
    grant_types               TEXT NOT NULL DEFAULT '[]',
    scopes                    TEXT NOT NULL DEFAULT '[]',
    audiences                 TEXT NOT NULL DEFAULT '[]',
    created_at                BIGINT NOT NULL
);

-- The client that *is* a resource is a foreign key, cleared when the client
-- is removed, so a client registered later under the same id inherits nothing
-- (SQLite schema 10).
CREATE TABLE resources (
    id         TEXT PRIMARY KEY,             -- the audience URI tokens are addressed to
    client_id  TEXT REFERENCES clients(id) ON DELETE SET NULL, -- the client that is this API, if any
    created_at BIGINT NOT NULL
);
CREATE INDEX resources_client ON resources(client_id) WHERE client_id IS NOT NULL;

CREATE TABLE resource_scopes (
    resource_id TEXT NOT NULL REFERENCES resources(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (resource_id, name)
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,          -- the stable `sub`
    username      TEXT NOT NULL UNIQUE,
    email         TEXT,
    name          TEXT,
    password_hash TEXT NOT NULL,             -- argon2id PHC string
    disabled_at   BIGINT,
    created_at    BIGINT NOT NULL
);

-- A grant is what tokens hang from: a person's consent to a client, or a
-- service's client-credentials request. Revoking it cascades to its tokens.
CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    grant_type  TEXT NOT NULL,
    subject     TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    auth_time   BIGINT,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX grants_subject ON grants(subject);
CREATE INDEX grants_client ON grants(client_id);

-- Every token deputy issues. Lineage and person indexes cover only rows that
-- have a value: service tokens have no parent, grant or person (schema 4).
CREATE TABLE tokens (
    jti             TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('access', 'refresh', 'id')),
    subject         TEXT NOT NULL,
    subject_kind    TEXT NOT NULL CHECK (subject_kind IN ('person', 'service')),
    client_id       TEXT NOT NULL,
    client_kind     TEXT NOT NULL,
    actor_chain     TEXT,                    -- the `act` claim (JSON), delegation tokens only
    audience        TEXT NOT NULL,
    scope           TEXT NOT NULL,
    task            TEXT,
    issued_at       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    parent_jti      TEXT,                    -- the token this one was derived from
    grant_id        TEXT,
    grant_type      TEXT NOT NULL,
    rule_id         TEXT,                    -- the delegation rule that allowed it
    revoked_at      BIGINT,
    revoked_reason  TEXT,
    may_act         TEXT,                    -- RFC 8693 §4.4: who may exchange it next (schema 5)
    actor_token_jti TEXT                     -- a broker's actor token, the second parent (schema 6)
);
CREATE INDEX tokens_parent ON tokens(parent_jti) WHERE parent_jti IS NOT NULL;
CREATE INDEX tokens_grant ON tokens(grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX tokens_subject ON tokens(subject);
CREATE INDEX tokens_client ON tokens(client_id);
CREATE INDEX tokens_actor_token ON tokens(actor_token_jti) WHERE actor_token_jti IS NOT NULL;

-- RFC 7523 §3 item 7: a client assertion's `jti` is used once; kept until the
-- assertion itself has expired.
CREATE TABLE used_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX used_assertions_expiry ON used_assertions(expires_at);

-- The audit trail. Ids come from the database only (GENERATED ALWAYS: an
-- insert naming an id is refused, so no event can be forged over another).
CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    event       TEXT NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('person', 'service', 'delegated', 'admin', 'system')),
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'refused')),
    person      TEXT,
    client_id   TEXT,
    client_kind TEXT,
    actor_chain TEXT,
    audience    TEXT,
    scope       TEXT,
    task        TEXT,
    jti         TEXT,
    parent_jti  TEXT,
    rule_id     TEXT,
    reason      TEXT,
    detail      TEXT
);
CREATE INDEX audit_person ON audit_events(person) WHERE person IS NOT NULL;
CREATE INDEX audit_client ON audit_events(client_id);
CREATE INDEX audit_at ON audit_events(at);

-- Append-only: every UPDATE, DELETE and TRUNCATE is refused, even one that
-- would touch no row (and so also INSERT ... ON CONFLICT DO UPDATE).
CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only'
        USING DETAIL = TG_OP || ' on ' || TG_TABLE_NAME || ' refused';
END;
$$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- People signing in: sessions, pending authorization interactions,
-- remembered consent, authorization codes and refresh tokens (schema 2).

-- Login sessions. Only the SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    auth_time  BIGINT NOT NULL,
    amr        TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
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
    login_done   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

-- RFC 6749 §4.1.2: single use, short lived, bound to client, redirect_uri,
-- PKCE challenge, nonce, scope and resource. Stored by SHA-256 only.
CREATE TABLE authorization_codes (
    code_hash          TEXT PRIMARY KEY,
    client_id          TEXT NOT NULL,
    user_id            TEXT NOT NULL,
    grant_id           TEXT NOT NULL,
    redirect_uri       TEXT NOT NULL,
    redirect_uri_sent  BOOLEAN NOT NULL,    -- was redirect_uri in the request (RFC 6749 §4.1.3)
    code_challenge     TEXT NOT NULL,
    scope              TEXT NOT NULL,
    nonce              TEXT,
    resource           TEXT NOT NULL,
    auth_time          BIGINT NOT NULL,
    amr                TEXT NOT NULL,
    issued_at          BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    consumed_at        BIGINT,
    sid                TEXT                 -- the login session (ID token `sid`, schema 8)
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
    auth_time           BIGINT NOT NULL,
    amr                 TEXT NOT NULL,
    issued_at           BIGINT NOT NULL,
    idle_expires_at     BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    consumed_at         BIGINT,
    consumed_by         TEXT,               -- client that consumed it
    successor_hash      TEXT,
    revoked_at          BIGINT,
    sid                 TEXT                -- the login session the family started in (schema 8)
);
CREATE INDEX refresh_family ON refresh_tokens(family_id);

-- Server-side secrets that must survive restarts (e.g. the refresh-successor key).
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Delegation rules for RFC 8693 token exchange (default deny, schema 3).
CREATE TABLE delegation_rules (
    id           TEXT PRIMARY KEY,
    actor        TEXT NOT NULL,             -- the client that acts
    audience     TEXT NOT NULL,             -- the target it may obtain tokens for
    scopes       TEXT NOT NULL,             -- JSON list: the most scope it may get there
    max_lifetime BIGINT NOT NULL,           -- seconds
    max_depth    BIGINT NOT NULL,           -- longest `act` chain the result may carry
    broker       TEXT,                      -- client that may request on the actor's behalf
    created_at   BIGINT NOT NULL,
    UNIQUE (actor, audience)
);

-- Remembered consent as (resource, scope) pairs: each row is one scope the
-- person allowed a client at one resource (RFC 8707 §2, schema 9).
CREATE TABLE consent_scopes (
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    resource   TEXT NOT NULL,
    scope      TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id, resource, scope)
);
CREATE INDEX consent_scopes_client ON consent_scopes(client_id);

-- State that instances sharing this database must share (schema 11).

-- Signing keys, so every instance signs with and publishes the same keys.
-- A key is what src/keys/file.rs keeps as `<kid>.json` (KeyMeta) and
-- `<kid>.pem`: the private key only sealed by deputy (AES-256-GCM), never in
-- the clear; the public half as SPKI PEM and as the JWK's x and y.
CREATE TABLE signing_keys (
    kid                TEXT PRIMARY KEY,    -- RFC 7638 thumbprint of the public key
    alg                TEXT NOT NULL,       -- JWS algorithm, ES256
    serial             BIGINT NOT NULL UNIQUE, -- creation order (ns since the epoch): of two keys
                                               -- activating in the same second, the later signs
    created_at         BIGINT NOT NULL,
    activates_at       BIGINT NOT NULL,     -- signs from then on (published in the JWKS before)
    public_pem         TEXT NOT NULL,
    x                  TEXT NOT NULL,       -- base64url P-256 coordinates
    y                  TEXT NOT NULL,
    sealed_private_key BYTEA NOT NULL       -- PKCS#8, sealed by deputy
);

-- Failed logins per account, so the throttle holds across instances: an
-- attacker cannot multiply the free attempts by the number of instances.
CREATE TABLE login_failures (
    account      TEXT PRIMARY KEY,          -- the key deputy derives from the user name
    failures     BIGINT NOT NULL CHECK (failures >= 0),
    last_failure BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
CREATE INDEX login_failures_last ON login_failures(last_failure);
