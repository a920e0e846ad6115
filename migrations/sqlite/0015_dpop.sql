-- deputy schema 15: sender-constrained tokens, DPoP (RFC 9449; issue 16).
-- A proof is accepted once: its (key thumbprint, jti) is recorded by
-- SHA-256 until the proof could no longer be accepted anyway (§11.1). A
-- bound access token records the thumbprint it carries in cnf.jkt (§6); a
-- public client's refresh tokens are bound to the key of the proof they
-- were issued with (§5); a code may be bound with dpop_jkt (§10). A client
-- or a delegation rule may require DPoP.

CREATE TABLE dpop_proofs (
    proof_hash TEXT NOT NULL PRIMARY KEY,  -- SHA-256 of "jkt:jti"
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

ALTER TABLE tokens ADD COLUMN cnf_jkt TEXT;
ALTER TABLE refresh_tokens ADD COLUMN dpop_jkt TEXT;
ALTER TABLE authorization_codes ADD COLUMN dpop_jkt TEXT;
ALTER TABLE clients ADD COLUMN require_dpop INTEGER NOT NULL DEFAULT 0 CHECK (require_dpop IN (0, 1));
ALTER TABLE delegation_rules ADD COLUMN require_dpop INTEGER NOT NULL DEFAULT 0 CHECK (require_dpop IN (0, 1));
