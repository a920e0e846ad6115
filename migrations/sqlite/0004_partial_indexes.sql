-- deputy schema 4: lineage and person indexes only over rows that have a
-- value. Service tokens have no parent, grant or person; indexing their NULLs
-- cost a B-tree page write per issued token for nothing.

DROP INDEX tokens_parent;
CREATE INDEX tokens_parent ON tokens(parent_jti) WHERE parent_jti IS NOT NULL;
DROP INDEX tokens_grant;
CREATE INDEX tokens_grant ON tokens(grant_id) WHERE grant_id IS NOT NULL;
DROP INDEX audit_person;
CREATE INDEX audit_person ON audit_events(person) WHERE person IS NOT NULL;
