//! Verification of JWTs deputy itself signed; `gate` is the one entry point
//! for callers. Only ES256 with one of our published keys is accepted; the
//! header's `jku`, `x5u`, `jwk` and `x5c` are never consulted (RFC 8725 §3.1).

use serde_json::{Map, Value};

use super::jws::{decode_unverified, numeric_date};
use crate::keys::KeyRing;

/// Why one of our own tokens is not acceptable. Callers map this to the error
/// their endpoint speaks (`invalid_token`, `invalid_request`, `active: false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnTokenError {
    Malformed,
    WrongType,
    UnknownKey,
    BadSignature,
    WrongIssuer,
    Expired,
}

#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub claims: Map<String, Value>,
}

impl VerifiedJwt {
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
    pub fn jti(&self) -> Option<&str> {
        self.str_claim("jti")
    }
    pub fn exp(&self) -> Option<i64> {
        numeric_date(self.claims.get("exp"))
    }
    pub fn auth_time(&self) -> Option<i64> {
        numeric_date(self.claims.get("auth_time"))
    }
}

/// An `id_token_hint` (OIDC Core §3.1.2.1, RP-Initiated Logout 1.0 §2): an
/// ID token deputy signed (`typ` JWT, our key, our issuer) naming a person.
/// It may have expired: a hint identifies, it does not authenticate.
pub fn verify_id_token_hint(
    ring: &KeyRing,
    issuer: &str,
    now: i64,
    token: &str,
) -> Result<VerifiedJwt, OwnTokenError> {
    // Any key still loaded: the hint may be older than the JWKS window.
    let v = verify_own_jwt_ignoring_exp(ring, issuer, now, i64::MAX / 4, token, Some("JWT"))?;
    if v.str_claim("sub").is_none() {
        return Err(OwnTokenError::WrongType);
    }
    Ok(v)
}

/// Verify a JWT deputy signed. `expected_typ` is checked exactly when given.
pub fn verify_own_jwt(
    ring: &KeyRing,
    issuer: &str,
    now: i64,
    max_jwt_lifetime: i64,
    token: &str,
    expected_typ: Option<&str>,
) -> Result<VerifiedJwt, OwnTokenError> {
    let verified =
        verify_own_jwt_ignoring_exp(ring, issuer, now, max_jwt_lifetime, token, expected_typ)?;
    match verified.exp() {
        Some(exp) if now < exp => Ok(verified),
        _ => Err(OwnTokenError::Expired),
    }
}

/// Like `verify_own_jwt` (algorithm, type, key, signature, issuer) but without
/// the expiry check, for revocation (RFC 7009 §2.1): an expired token may
/// still have live descendants that its revocation must reach. Never use this
/// to accept a token as a credential.
pub fn verify_own_jwt_ignoring_exp(
    ring: &KeyRing,
    issuer: &str,
    now: i64,
    max_jwt_lifetime: i64,
    token: &str,
    expected_typ: Option<&str>,
) -> Result<VerifiedJwt, OwnTokenError> {
    verify_signed(ring, issuer, now, max_jwt_lifetime, token, expected_typ).map(|(_kid, v)| v)
}

/// `verify_own_jwt_ignoring_exp`, and the `kid` of the key that verified it.
pub fn verify_signed(
    ring: &KeyRing,
    issuer: &str,
    now: i64,
    max_jwt_lifetime: i64,
    token: &str,
    expected_typ: Option<&str>,
) -> Result<(String, VerifiedJwt), OwnTokenError> {
    let jws = decode_unverified(token).map_err(|_malformed| OwnTokenError::Malformed)?;
    // RFC 8725 §3.1: the algorithm is ours to choose, never the token's.
    if jws.alg() != Some("ES256") || jws.header.contains_key("crit") {
        return Err(OwnTokenError::Malformed);
    }
    if let Some(t) = expected_typ {
        if jws.typ() != Some(t) {
            return Err(OwnTokenError::WrongType);
        }
    }
    let kid = jws.kid().ok_or(OwnTokenError::UnknownKey)?;
    let key = ring
        .verifying_key(kid, now, max_jwt_lifetime)
        .ok_or(OwnTokenError::UnknownKey)?;
    jws.verify_with(&key.verifier)
        .map_err(|_mismatch| OwnTokenError::BadSignature)?;
    if jws.payload.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(OwnTokenError::WrongIssuer);
    }
    let kid = kid.to_string();
    Ok((
        kid,
        VerifiedJwt {
            claims: jws.payload,
        },
    ))
}
