-- deputy schema 3: delegation rules for RFC 8693 token exchange (default deny).

CREATE TABLE delegation_rules (
    id           TEXT PRIMARY KEY,
    actor        TEXT NOT NULL,             -- the client that acts
    audience     TEXT NOT NULL,             -- the target it may obtain tokens for
    scopes       TEXT NOT NULL,             -- JSON list: the most scope it may get there
    max_lifetime INTEGER NOT NULL,          -- seconds
    max_depth    INTEGER NOT NULL,          -- longest `act` chain the result may carry
    broker       TEXT,                      -- client that may request on the actor's behalf
    created_at   INTEGER NOT NULL,
    UNIQUE (actor, audience)
);
