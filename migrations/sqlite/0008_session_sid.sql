-- deputy schema 8: ID tokens carry `sid`, the login session they come from
-- (OIDC Front-Channel Logout 1.0 §3 defines the claim), so RP-initiated
-- logout can tell a hint of this session from one of an earlier session of
-- the same person (RP-Initiated Logout 1.0 §2). Codes and refresh families
-- remember it; older rows have none.

ALTER TABLE authorization_codes ADD COLUMN sid TEXT;
ALTER TABLE refresh_tokens ADD COLUMN sid TEXT;
