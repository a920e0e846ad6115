-- deputy schema 9: remembered consent as (resource, scope) pairs.
--
-- Consent used to be one flat set per person and client, with the resources
-- mixed in as `resource:<uri>` entries, so allowing scope a at API R1 and
-- scope b at API R2 also "covered" b at R1, which the person never saw. Now
-- each row is one scope the person allowed at one resource (RFC 8707 §2).
--
-- Existing rows are carried over only where the pairs can be proven: a row
-- naming exactly one resource was consented for that resource alone. A row
-- naming several resources cannot say which scope went with which, so it is
-- dropped and the person is asked again.

CREATE TABLE consent_scopes (
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    resource   TEXT NOT NULL,
    scope      TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id, resource, scope)
) WITHOUT ROWID;
CREATE INDEX consent_scopes_client ON consent_scopes(client_id);

INSERT INTO consent_scopes (user_id, client_id, resource, scope, granted_at)
WITH RECURSIVE split(user_id, client_id, granted_at, tok, rest) AS (
    SELECT user_id, client_id, granted_at, '', scope || ' ' FROM consents
    UNION ALL
    SELECT user_id, client_id, granted_at,
           substr(rest, 1, instr(rest, ' ') - 1), substr(rest, instr(rest, ' ') + 1)
    FROM split WHERE rest <> ''
),
tokens AS (
    SELECT DISTINCT user_id, client_id, granted_at, tok FROM split WHERE tok <> ''
),
resources AS (
    SELECT user_id, client_id, substr(tok, 10) AS resource FROM tokens
    WHERE substr(tok, 1, 9) = 'resource:'
),
single AS (
    SELECT user_id, client_id, max(resource) AS resource FROM resources
    GROUP BY user_id, client_id HAVING count(*) = 1
)
SELECT t.user_id, t.client_id, s.resource, t.tok, t.granted_at
FROM tokens t JOIN single s ON s.user_id = t.user_id AND s.client_id = t.client_id
WHERE substr(t.tok, 1, 9) <> 'resource:';

DROP TABLE consents;
