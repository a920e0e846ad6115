//! Verifiers for the keys proofs carry, made once per key and algorithm:
//! turning a JWK into an OpenSSL key costs several times the signature check
//! itself (measured: cc_jwt with a proof at 36 % of cc_jwt's rate without
//! this cache), and a client signs every proof with the same key. Bounded,
//! least recently used first out; an entry depends only on the key and the
//! algorithm, so it can never change an answer (per instance is fine).

use std::sync::Arc;

use josekit::jwk::Jwk;
use josekit::jws::JwsVerifier;
use quick_cache::sync::Cache;
use serde_json::{Map, Value};

/// Proof keys remembered at most.
const CACHED_KEYS: usize = 10_000;

pub struct ProofVerifiers {
    cache: Cache<[u8; 32], Arc<dyn JwsVerifier>>,
}

impl Default for ProofVerifiers {
    fn default() -> Self {
        ProofVerifiers {
            cache: Cache::new(CACHED_KEYS),
        }
    }
}

impl std::fmt::Debug for ProofVerifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofVerifiers")
            .field("keys", &self.cache.len())
            .finish()
    }
}

/// Why no verifier could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    NotAKey,
    WrongAlg,
}

/// A verifier for `alg` from `jwk` (already checked to be public).
pub fn make(alg: &str, jwk: &Map<String, Value>) -> Result<Arc<dyn JwsVerifier>, KeyProblem> {
    let jwk = Jwk::from_map(jwk.clone()).map_err(|_bad| KeyProblem::NotAKey)?;
    crate::client_auth::jwks::verifier_for(alg, &jwk)
        .map(Arc::from)
        .ok_or(KeyProblem::WrongAlg)
}

impl ProofVerifiers {
    /// The verifier for `alg` and `jwk`, made on first use. Keyed by the
    /// algorithm and the whole key as sent (serde_json's map is ordered).
    pub fn get(
        &self,
        alg: &str,
        jwk: &Map<String, Value>,
    ) -> Result<Arc<dyn JwsVerifier>, KeyProblem> {
        let text = serde_json::to_string(jwk).map_err(|_unserialisable| KeyProblem::NotAKey)?;
        let key = crate::secret::sha256(format!("{alg}\0{text}").as_bytes());
        if let Some(v) = self.cache.get(&key) {
            return Ok(v);
        }
        let v = make(alg, jwk)?;
        self.cache.insert(key, v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use josekit::jws::ES256;

    #[test]
    fn one_verifier_per_key_and_algorithm() {
        let cache = ProofVerifiers::default();
        let pair = ES256.generate_key_pair().unwrap();
        let jwk = pair.to_jwk_public_key().as_ref().clone();
        let a = cache.get("ES256", &jwk).unwrap();
        let b = cache.get("ES256", &jwk).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "made once");
        assert_eq!(cache.get("RS256", &jwk).err(), Some(KeyProblem::WrongAlg));
        let other = ES256
            .generate_key_pair()
            .unwrap()
            .to_jwk_public_key()
            .as_ref()
            .clone();
        assert!(!Arc::ptr_eq(&a, &cache.get("ES256", &other).unwrap()));
        let mut junk = Map::new();
        junk.insert("kty".into(), Value::from("nope"));
        assert!(cache.get("ES256", &junk).is_err());
    }
}
