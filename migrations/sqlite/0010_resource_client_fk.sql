-- deputy schema 10: the client that *is* a resource is a foreign key.
--
-- Removing a client left it linked as the client of its resources, so a
-- client registered later under the same id inherited introspection
-- visibility and exchange rights for them. Now the link is a foreign key
-- that is cleared when the client is removed; links to clients that no
-- longer exist are cleared on the way.
--
-- SQLite cannot add a foreign key to a table, so both tables are rebuilt
-- (children first, so no cascade fires while copying).

CREATE TABLE resources_new (
    id         TEXT PRIMARY KEY,             -- the audience URI tokens are addressed to
    client_id  TEXT REFERENCES clients(id) ON DELETE SET NULL, -- the client that is this API, if any
    created_at INTEGER NOT NULL
);
INSERT INTO resources_new (id, client_id, created_at)
SELECT id, CASE WHEN client_id IN (SELECT id FROM clients) THEN client_id END, created_at
FROM resources;

CREATE TABLE resource_scopes_new (
    resource_id TEXT NOT NULL REFERENCES resources_new(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    PRIMARY KEY (resource_id, name)
);
INSERT INTO resource_scopes_new SELECT resource_id, name, description FROM resource_scopes;

DROP TABLE resource_scopes;
DROP TABLE resources;
ALTER TABLE resources_new RENAME TO resources;
ALTER TABLE resource_scopes_new RENAME TO resource_scopes;
CREATE INDEX resources_client ON resources(client_id) WHERE client_id IS NOT NULL;
