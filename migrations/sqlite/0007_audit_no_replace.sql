-- deputy schema 7: REPLACE (and INSERT OR REPLACE) deletes a conflicting row
-- without firing DELETE triggers, so it could rewrite an audit event. An
-- insert may only add a new id.

CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events
WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
