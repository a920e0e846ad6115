-- deputy schema 1: clients, resources, people, grants, every issued token,
-- used client-assertion ids, and the append-only audit trail.

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
    created_at                INTEGER NOT NULL
);

CREATE TABLE resources (
    id         TEXT PRIMARY KEY,             -- the audience URI tokens are addressed to
    client_id  TEXT,                         -- the client that is this API, if any
    created_at INTEGER NOT NULL
);

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
    disabled_at   INTEGER,
    created_at    INTEGER NOT NULL
);

-- A grant is what tokens hang from: a person's consent to a client, or a
-- service's client-credentials request. Revoking it cascades to its tokens.
CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    grant_type  TEXT NOT NULL,
    subject     TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    auth_time   INTEGER,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX grants_subject ON grants(subject);
CREATE INDEX grants_client ON grants(client_id);

-- Every token deputy issues.
CREATE TABLE tokens (
    jti            TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('access', 'refresh', 'id')),
    subject        TEXT NOT NULL,
    subject_kind   TEXT NOT NULL CHECK (subject_kind IN ('person', 'service')),
    client_id      TEXT NOT NULL,
    client_kind    TEXT NOT NULL,
    actor_chain    TEXT,                     -- the `act` claim (JSON), delegation tokens only
    audience       TEXT NOT NULL,
    scope          TEXT NOT NULL,
    task           TEXT,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    parent_jti     TEXT,                     -- the token this one was derived from
    grant_id       TEXT,
    grant_type     TEXT NOT NULL,
    rule_id        TEXT,                     -- the delegation rule that allowed it
    revoked_at     INTEGER,
    revoked_reason TEXT
);
CREATE INDEX tokens_parent ON tokens(parent_jti);
CREATE INDEX tokens_grant ON tokens(grant_id);
CREATE INDEX tokens_subject ON tokens(subject);
CREATE INDEX tokens_client ON tokens(client_id);

-- RFC 7523 §3 item 7: a client assertion's `jti` is used once; kept until the
-- assertion itself has expired.
CREATE TABLE used_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
) WITHOUT ROWID;
CREATE INDEX used_assertions_expiry ON used_assertions(expires_at);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
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
CREATE INDEX audit_person ON audit_events(person);
CREATE INDEX audit_client ON audit_events(client_id);
CREATE INDEX audit_at ON audit_events(at);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
