-- deputy schema 16: asking the person first (OpenID CIBA Core 1.0, poll
-- mode; issue 15). One row per backchannel authentication request. The
-- auth_req_id is a bearer secret of the client: stored by SHA-256 only. The
-- handle is a second random value, the only one the person's account page
-- ever shows or posts. user_id is NULL when the hint named nobody who can
-- be asked (the client gets the same answer; the request simply expires).
-- Poll throttling lives here too (last_polled_at, poll_interval), so any
-- instance can answer the next poll.

CREATE TABLE backchannel_requests (
    auth_req_id_hash TEXT NOT NULL PRIMARY KEY,
    handle           TEXT NOT NULL UNIQUE,
    client_id        TEXT NOT NULL,
    user_id          TEXT,
    scope            TEXT NOT NULL,
    resource         TEXT NOT NULL,
    task             TEXT,
    binding_message  TEXT,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    poll_interval    INTEGER NOT NULL CHECK (poll_interval > 0),
    last_polled_at   INTEGER,
    status           TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'approved', 'denied', 'redeemed', 'expired')),
    decided_at       INTEGER,
    shown_at         INTEGER,
    auth_time        INTEGER   -- when the person who decided signed in (the ID token's auth_time)
) STRICT;

CREATE INDEX backchannel_requests_pending ON backchannel_requests (user_id, status);
