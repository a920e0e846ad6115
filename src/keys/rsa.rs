//! The RSA key of each key generation: OIDC Core §15.1 requires an OP to be
//! able to sign ID tokens with RS256, and several relying-party libraries
//! expect it. Only ID tokens of clients registered with `id_token_alg`
//! RS256 are signed with it; everything else stays ES256.
//!
//! Generating a 3072-bit key takes up to a second, so it happens only where
//! keys are created (first start, rotation, the one-time addition to an
//! older deployment), never on a request path.

use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;

/// Modulus size: 3072 bits (NIST SP 800-57: 128-bit security, like P-256).
pub const BITS: u32 = 3072;

/// The public parts of an RSA key (base64url, RFC 7518 §6.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublic {
    pub n: String,
    pub e: String,
    pub public_pem: String,
}

/// RFC 7638 §3.2: thumbprint over the required members (`e`, `kty`, `n`) in
/// lexicographic order.
pub fn rsa_thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(crate::secret::sha256(canonical.as_bytes()))
}

fn public_of(key: &PKey<Private>) -> Result<RsaPublic, String> {
    let rsa = key.rsa().map_err(|e| format!("not an RSA key: {e}"))?;
    if rsa.n().num_bits() < 2048 {
        return Err("RSA key shorter than 2048 bits (RFC 7518 §3.3)".to_string());
    }
    let public_pem = key
        .public_key_to_pem()
        .map_err(|e| format!("cannot encode public key: {e}"))?;
    Ok(RsaPublic {
        n: URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
        e: URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
        public_pem: String::from_utf8(public_pem)
            .map_err(|_not_utf8| "public key PEM is not text".to_string())?,
    })
}

/// The public parts and thumbprint of a PKCS#8 PEM RSA private key.
pub fn inspect(private_pem: &str) -> Result<(String, RsaPublic), String> {
    let key = PKey::private_key_from_pem(private_pem.as_bytes())
        .map_err(|e| format!("not a PKCS#8 PEM key: {e}"))?;
    let public = public_of(&key)?;
    Ok((rsa_thumbprint(&public.n, &public.e), public))
}

/// Keys handed out again instead of generating new ones; see
/// `reuse_generated_keys`. `None`: every key is generated.
static REUSED: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// For test suites only (deputy's binary never calls this): remember every
/// RSA key generated in this process and hand it out again to any other key
/// store in this process where its `kid` is not in use, so a test process
/// generates a handful of keys rather than one per test deployment.
#[doc(hidden)]
pub fn reuse_generated_keys() {
    let mut g = match REUSED.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if g.is_none() {
        *g = Some(Vec::new());
    }
}

fn generate_pem() -> Result<String, String> {
    let rsa = Rsa::generate(BITS).map_err(|e| format!("cannot generate an RSA key: {e}"))?;
    let key = PKey::from_rsa(rsa).map_err(|e| format!("cannot generate an RSA key: {e}"))?;
    let pem = key
        .private_key_to_pem_pkcs8()
        .map_err(|e| format!("cannot encode key: {e}"))?;
    String::from_utf8(pem).map_err(|_not_utf8| "key PEM is not text".to_string())
}

/// A new RSA private key (PKCS#8 PEM) whose `kid` is none of `in_use`.
pub fn new_private_pem(in_use: &[String]) -> Result<String, String> {
    let mut reused = match REUSED.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    // Unit tests of this crate always reuse (see `reuse_generated_keys`).
    if cfg!(test) && reused.is_none() {
        *reused = Some(Vec::new());
    }
    let Some(pool) = reused.as_mut() else {
        drop(reused);
        return generate_pem();
    };
    for pem in pool.iter() {
        let (kid, _) = inspect(pem)?;
        if !in_use.contains(&kid) {
            return Ok(pem.clone());
        }
    }
    // Generated under the lock: concurrent tests wait for this one key
    // rather than each generating their own.
    let pem = generate_pem()?;
    pool.push(pem.clone());
    Ok(pem)
}

/// A fixture key for unit tests (generated once per test process).
#[cfg(test)]
pub fn test_key() -> String {
    new_private_pem(&[]).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1: the example RSA key and its thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            rsa_thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn inspect_gives_public_parts_and_thumbprint_kid() {
        let pem = test_key();
        let (kid, public) = inspect(&pem).unwrap();
        assert_eq!(kid, rsa_thumbprint(&public.n, &public.e));
        assert_eq!(public.e, "AQAB");
        // 3072 bits = 384 bytes = 512 base64url characters.
        assert_eq!(public.n.len(), 512);
        assert!(public.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(inspect("not a key").is_err());
    }
}
