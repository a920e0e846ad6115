//! Verification of JWTs deputy itself signed; `gate` is the one entry point
//! for callers. Only ES256 with one of our published P-256 keys is accepted,
//! and for an ID token (`id_token_hint`) also RS256 with one of our RSA keys;
//! the header's `jku`, `x5u`, `jwk` and `x5c` are never consulted (RFC 8725 §3.1).

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
    // Any key still loaded: the hint may be older than the JWKS window. ID
    // tokens are the only tokens deputy signs RS256 (an RS256 client's).
    let (_kid, v) = verify_as(
        ring,
        issuer,
        now,
        i64::MAX / 4,
        token,
        Some("JWT"),
        ID_TOKEN_ALGS,
    )?;
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

/// What deputy signs everything but ID tokens with.
const OWN_ALGS: &[&str] = &["ES256"];
/// ID tokens: ES256, or RS256 for clients that registered it (OIDC Core §15.1).
const ID_TOKEN_ALGS: &[&str] = &["ES256", "RS256"];

/// `verify_own_jwt_ignoring_exp`, and the `kid` of the key that verified it.
/// ES256 only: an access token (or any token but an ID token) is never RS256.
pub fn verify_signed(
    ring: &KeyRing,
    issuer: &str,
    now: i64,
    max_jwt_lifetime: i64,
    token: &str,
    expected_typ: Option<&str>,
) -> Result<(String, VerifiedJwt), OwnTokenError> {
    verify_as(
        ring,
        issuer,
        now,
        max_jwt_lifetime,
        token,
        expected_typ,
        OWN_ALGS,
    )
}

fn verify_as(
    ring: &KeyRing,
    issuer: &str,
    now: i64,
    max_jwt_lifetime: i64,
    token: &str,
    expected_typ: Option<&str>,
    algs: &[&str],
) -> Result<(String, VerifiedJwt), OwnTokenError> {
    let jws = decode_unverified(token).map_err(|_malformed| OwnTokenError::Malformed)?;
    // RFC 8725 §3.1: the algorithm is ours to choose, never the token's.
    let alg = jws.alg().ok_or(OwnTokenError::Malformed)?;
    if !algs.contains(&alg) || jws.header.contains_key("crit") {
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
    // RFC 8725 §3.1: each key verifies only its own algorithm (a kid of our
    // RSA key under an ES256 header, or the reverse, is refused).
    if key.meta.alg != alg {
        return Err(OwnTokenError::UnknownKey);
    }
    jws.verify_with(key.verifier.as_ref())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keys;
    use crate::model::IdTokenAlg;
    use crate::token::jws::encode;
    use serde_json::json;

    const ISS: &str = "https://as";

    fn ring() -> std::sync::Arc<KeyRing> {
        let dir =
            std::env::temp_dir().join(format!("deputy-verify-{}", crate::secret::random_token(6)));
        Keys::open(&dir, 1000).unwrap().ring()
    }

    fn claims() -> serde_json::Value {
        json!({"iss": ISS, "sub": "p", "jti": "j", "exp": 5000, "aud": "c"})
    }

    #[test]
    fn rs256_is_accepted_for_id_tokens_only() {
        let ring = ring();
        let id = crate::token::sign_id_token(&ring, 1000, IdTokenAlg::Rs256, &claims()).unwrap();
        let (h, _) = id.split_once('.').unwrap();
        assert!(String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, h).unwrap()
        )
        .unwrap()
        .contains(r#""alg":"RS256""#));
        // An ID token hint (OIDC Core §3.1.2.1) may be an RS256 ID token.
        assert_eq!(
            verify_id_token_hint(&ring, ISS, 1000, &id)
                .unwrap()
                .str_claim("sub"),
            Some("p")
        );
        // The same key and claims as an access token: refused, whatever typ.
        let rsa = ring.rsa_signing_key(1000).unwrap();
        for typ in ["at+jwt", "JWT"] {
            let header = json!({"alg": "RS256", "typ": typ, "kid": rsa.meta.kid});
            let t = encode(&header, &claims(), rsa.signer.as_ref()).unwrap();
            assert_eq!(
                verify_signed(&ring, ISS, 1000, 330, &t, Some(typ)).unwrap_err(),
                OwnTokenError::Malformed
            );
        }
        // ES256 ID tokens stay accepted.
        let es = crate::token::sign_id_token(&ring, 1000, IdTokenAlg::Es256, &claims()).unwrap();
        assert!(verify_id_token_hint(&ring, ISS, 1000, &es).is_ok());
    }

    #[test]
    fn a_header_alg_must_match_its_keys_kind() {
        let ring = ring();
        let ec = ring.signing_key(1000).unwrap();
        let rsa = ring.rsa_signing_key(1000).unwrap();
        // RS256 naming the P-256 key, ES256 naming the RSA key.
        let swapped = [
            (
                json!({"alg": "RS256", "typ": "JWT", "kid": ec.meta.kid}),
                rsa,
            ),
            (
                json!({"alg": "ES256", "typ": "JWT", "kid": rsa.meta.kid}),
                ec,
            ),
        ];
        for (header, signer) in swapped {
            let t = encode(&header, &claims(), signer.signer.as_ref()).unwrap();
            assert_eq!(
                verify_id_token_hint(&ring, ISS, 1000, &t).unwrap_err(),
                OwnTokenError::UnknownKey,
                "{header}"
            );
        }
    }
}
