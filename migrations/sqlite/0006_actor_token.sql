-- deputy schema 6: a delegation token obtained by a broker hangs from two
-- tokens: the subject token (parent_jti) and the actor's own token presented
-- as actor_token (RFC 8693 §2.1). Revoking either must end it.

ALTER TABLE tokens ADD COLUMN actor_token_jti TEXT;
CREATE INDEX tokens_actor_token ON tokens(actor_token_jti) WHERE actor_token_jti IS NOT NULL;
