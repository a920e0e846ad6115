//! Checking one DPoP proof (RFC 9449 §4.3) against the request it came
//! with. Pure: the caller supplies the time, the expected method and URL,
//! the access token (at a resource) and the nonce keys; recording the `jti`
//! (single use across instances) is the store's job.

use serde_json::{Map, Value};

use super::nonce::Nonces;
use super::thumbprint::jwk_thumbprint;
use crate::token::jws::{decode_unverified, numeric_date};

/// Signature algorithms deputy accepts in proofs (advertised as
/// `dpop_signing_alg_values_supported`): asymmetric only, never `none` or
/// HMAC (RFC 9449 §4.3 item 5).
pub const PROOF_ALGS: &[&str] = &["ES256", "RS256", "PS256", "EdDSA"];

/// How far a proof's `iat` may lie from the server's clock, either way
/// (RFC 9449 §4.3 item 11, §11.1). A proof's `jti` is remembered at least
/// this long after its `iat`, so a replay inside the window is caught.
pub const IAT_WINDOW: i64 = 60;

/// The longest `jti` deputy records.
const MAX_JTI_LEN: usize = 256;

/// Private or symmetric members that must never appear in the proof's key
/// (RFC 9449 §4.3 item 7).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What the request the proof came with must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request's method (`htm`).
    pub method: &'a str,
    /// The endpoint's URL as deputy publishes it (`htu`).
    pub url: &'a str,
    pub now: i64,
    /// At a resource (`/userinfo`): the access token presented with the
    /// proof, whose hash the proof must carry as `ath` (RFC 9449 §4.2, §7).
    pub access_token: Option<&'a str>,
    /// When deputy requires nonces (RFC 9449 §8): the keys that check them.
    pub nonces: Option<&'a Nonces>,
    /// Verifiers of keys seen before (none: make one for this proof).
    pub verifiers: Option<&'a super::ProofVerifiers>,
}

/// A proof that passed every check but the single use of its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidProof {
    /// RFC 7638 thumbprint of the proof's public key (the `cnf.jkt` it binds).
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

impl ValidProof {
    /// Until when the `jti` must be remembered to refuse a replay.
    pub fn remember_until(&self, now: i64) -> i64 {
        self.iat.max(now) + IAT_WINDOW + 1
    }
}

/// Why a proof was refused: `invalid_dpop_proof` with a short description,
/// or `use_dpop_nonce` (RFC 9449 §8: the client retries with the nonce
/// deputy sends in `DPoP-Nonce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    Invalid(&'static str),
    UseNonce,
}

fn str_claim<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    m.get(name).and_then(Value::as_str)
}

/// Check a proof (the value of the request's one `DPoP` header).
pub fn check(proof: &str, expected: &Expected<'_>) -> Result<ValidProof, ProofError> {
    use ProofError::Invalid;
    // §4.3 items 2-3: one well-formed JWT with the required members.
    let jws =
        decode_unverified(proof).map_err(|_malformed| Invalid("the DPoP proof is not a JWT"))?;
    // RFC 7515 §4.1.11 (item 2: a well-formed JWS): deputy understands no
    // extension, so a proof that declares any critical one is refused.
    if jws.header.contains_key("crit") {
        return Err(Invalid(
            "the DPoP proof has a crit header deputy does not support",
        ));
    }
    // Item 4.
    if jws.typ() != Some("dpop+jwt") {
        return Err(Invalid("the DPoP proof's typ must be dpop+jwt"));
    }
    // Item 5.
    let alg = jws.alg().ok_or(Invalid("the DPoP proof has no alg"))?;
    if !PROOF_ALGS.contains(&alg) {
        return Err(Invalid("the DPoP proof's alg is not supported"));
    }
    // Item 7 before anything uses the key.
    let jwk_map = jws
        .header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(Invalid("the DPoP proof has no jwk"))?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk_map.contains_key(*m)) {
        return Err(Invalid("the DPoP proof's jwk must be a public key"));
    }
    // Item 6: the signature, with the key the proof carries.
    let verifier = match expected.verifiers {
        Some(cache) => cache.get(alg, jwk_map),
        None => super::verifiers::make(alg, jwk_map),
    }
    .map_err(|p| match p {
        super::verifiers::KeyProblem::NotAKey => Invalid("the DPoP proof's jwk is not a key"),
        super::verifiers::KeyProblem::WrongAlg => {
            Invalid("the DPoP proof's jwk does not fit its alg")
        }
    })?;
    jws.verify_with(verifier.as_ref())
        .map_err(|_mismatch| Invalid("the DPoP proof's signature does not verify"))?;
    let jkt = jwk_thumbprint(jwk_map).ok_or(Invalid("the DPoP proof's jwk is not a key"))?;
    let claims = &jws.payload;
    let jti = str_claim(claims, "jti").ok_or(Invalid("the DPoP proof has no jti"))?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(Invalid("the DPoP proof's jti is empty or too long"));
    }
    // Item 8.
    if str_claim(claims, "htm") != Some(expected.method) {
        return Err(Invalid("the DPoP proof's htm is not this request's method"));
    }
    // Item 9.
    let htu = str_claim(claims, "htu").ok_or(Invalid("the DPoP proof has no htu"))?;
    if !same_target(htu, expected.url) {
        return Err(Invalid("the DPoP proof's htu is not this endpoint"));
    }
    // Item 11.
    let iat = numeric_date(claims.get("iat")).ok_or(Invalid("the DPoP proof has no iat"))?;
    // abs_diff: an `iat` far out of range must not overflow.
    if iat.abs_diff(expected.now) > IAT_WINDOW.unsigned_abs() {
        return Err(Invalid("the DPoP proof's iat is not recent"));
    }
    // Item 12 / §7.1: at a resource, the proof names the access token.
    if let Some(token) = expected.access_token {
        let ath = str_claim(claims, "ath").ok_or(Invalid("the DPoP proof has no ath"))?;
        let want = crate::secret::sha256_b64(token.as_bytes());
        if !crate::secret::constant_time_eq(ath.as_bytes(), want.as_bytes()) {
            return Err(Invalid(
                "the DPoP proof's ath does not match the access token",
            ));
        }
    }
    // Item 10 / §8: checked last, so a client is asked for a nonce only for
    // an otherwise valid proof.
    if let Some(nonces) = expected.nonces {
        match str_claim(claims, "nonce") {
            Some(n) if nonces.accepts(n, expected.now) => {}
            _ => return Err(ProofError::UseNonce),
        }
    }
    Ok(ValidProof {
        jkt,
        jti: jti.to_string(),
        iat,
    })
}

/// `htu` names the same URL as `expected`, ignoring query and fragment, after
/// the normalisation RFC 9449 §4.3 item 9 points to (RFC 3986 §6.2.2-§6.2.3:
/// case of scheme and host, default port, dot segments, as `url` parses).
fn same_target(htu: &str, expected: &str) -> bool {
    // The usual case, the URL as deputy publishes it: no parsing (deputy's
    // own endpoint URL has an http(s) scheme, no credentials, query or
    // fragment, so equal text is the same target).
    if htu == expected {
        return true;
    }
    let norm = |s: &str| {
        let mut u = url::Url::parse(s).ok()?;
        // Only query and fragment are ignored: credentials make it another URI.
        if !matches!(u.scheme(), "http" | "https")
            || !u.username().is_empty()
            || u.password().is_some()
        {
            return None;
        }
        u.set_query(None);
        u.set_fragment(None);
        Some((
            u.scheme().to_string(),
            u.host_str().map(str::to_ascii_lowercase),
            u.port_or_known_default(),
            u.path().to_string(),
        ))
    };
    match (norm(htu), norm(expected)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
#[path = "proof_tests.rs"]
mod tests;
