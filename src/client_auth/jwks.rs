//! A client's registered public keys, turned into verifiers for the one
//! algorithm it registered. Parsed sets are cached by the JWKS text, so a key
//! change takes effect at once.

use std::sync::Arc;

use josekit::jwk::{Jwk, JwkSet};
use josekit::jws::{EdDSA, JwsVerifier, ES256, PS256, RS256};

use super::Context;
use quick_cache::sync::Cache;

/// Algorithms a client may register for its assertions. `none` and every HMAC
/// algorithm are absent on purpose (RFC 8725 §3.1, §3.2).
pub const SUPPORTED_ALGS: &[&str] = &["ES256", "RS256", "PS256", "EdDSA"];

/// Private members that must never appear in a registered public key set.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

#[derive(Debug)]
pub struct ClientKeys {
    pub keys: Vec<(Option<String>, Box<dyn JwsVerifier>)>,
}

impl ClientKeys {
    /// Candidate keys: those with the header's `kid`, or all when there is none.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a dyn JwsVerifier> + 'a {
        self.keys
            .iter()
            .filter(move |(k, _)| kid.is_none() || k.as_deref() == kid)
            .map(|(_, v)| v.as_ref())
    }
}

pub(crate) fn verifier_for(alg: &str, jwk: &Jwk) -> Option<Box<dyn JwsVerifier>> {
    let v: Box<dyn JwsVerifier> = match alg {
        "ES256" => Box::new(ES256.verifier_from_jwk(jwk).ok()?),
        "RS256" => Box::new(RS256.verifier_from_jwk(jwk).ok()?),
        "PS256" => Box::new(PS256.verifier_from_jwk(jwk).ok()?),
        "EdDSA" => Box::new(EdDSA.verifier_from_jwk(jwk).ok()?),
        _ => return None,
    };
    Some(v)
}

/// Parse a JWK Set and keep the keys usable with `alg`. Refuses private keys
/// and sets with no usable key.
pub fn parse_for_alg(jwks_text: &str, alg: &str) -> Result<ClientKeys, String> {
    if !SUPPORTED_ALGS.contains(&alg) {
        return Err(format!(
            "algorithm {alg} is not supported (use one of {})",
            SUPPORTED_ALGS.join(", ")
        ));
    }
    let value: serde_json::Value =
        serde_json::from_str(jwks_text).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = value
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("JWKS must be an object with a `keys` array")?;
    for k in keys {
        let obj = k.as_object().ok_or("every JWKS entry must be an object")?;
        if PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
            return Err("JWKS contains private or symmetric key material".to_string());
        }
    }
    let set = JwkSet::from_bytes(jwks_text.as_bytes()).map_err(|e| format!("invalid JWKS: {e}"))?;
    let mut out = Vec::new();
    for jwk in set.keys() {
        if jwk.algorithm().is_some_and(|a| a != alg) {
            continue;
        }
        if jwk.key_use().is_some_and(|u| u != "sig") {
            continue;
        }
        if let Some(v) = verifier_for(alg, jwk) {
            out.push((jwk.key_id().map(str::to_string), v));
        }
    }
    if out.is_empty() {
        return Err(format!("JWKS has no public key usable with {alg}"));
    }
    Ok(ClientKeys { keys: out })
}

/// (client id, algorithm, SHA-256 of the JWKS text)
type KeyCacheKey = (String, String, [u8; 32]);

/// Parsed key sets remembered at most.
const CACHED_SETS: usize = 10_000;
/// Seconds a parsed set is kept before it is parsed again. An entry never
/// goes stale (the key names the exact JWKS text); the expiry only lets the
/// sets of removed or changed clients go even when the cache is not full.
const CACHE_TTL: i64 = 3600;

/// Cache of parsed key sets: bounded (sets not used recently go first when
/// it is full) and each entry kept for `CACHE_TTL` seconds of the server
/// clock. Sets that fail to parse are not cached.
pub struct KeyCache {
    cache: Cache<KeyCacheKey, (i64, Arc<ClientKeys>)>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::with_capacity(CACHED_SETS)
    }
}

impl KeyCache {
    fn with_capacity(capacity: usize) -> Self {
        KeyCache {
            cache: Cache::new(capacity),
        }
    }

    /// The verifiers in `jwks_text` usable with `alg`, parsed once per
    /// (client, algorithm, text) and `CACHE_TTL`.
    pub fn get_or_parse(
        &self,
        client_id: &str,
        alg: &str,
        jwks_text: &str,
        now: i64,
    ) -> Result<Arc<ClientKeys>, String> {
        let key = (
            client_id.to_string(),
            alg.to_string(),
            crate::secret::sha256(jwks_text.as_bytes()),
        );
        if let Some((until, keys)) = self.cache.get(&key) {
            if now < until {
                return Ok(keys);
            }
        }
        let parsed = Arc::new(parse_for_alg(jwks_text, alg)?);
        self.cache
            .insert(key, (now.saturating_add(CACHE_TTL), parsed.clone()));
        Ok(parsed)
    }
}

/// The verifiers for a client's assertion: from its registered JWKS, or from
/// its `jwks_uri` (fetched and cached; refetched once on an unknown `kid`).
pub async fn client_keys(
    state: &Context<'_>,
    client: &crate::store::clients::Client,
    kid: Option<&str>,
) -> Result<Arc<ClientKeys>, crate::error::OAuthError> {
    use crate::error::OAuthError;
    if let Some(text) = &client.jwks {
        return state
            .caches
            .client_keys
            .get_or_parse(&client.id, &client.assertion_alg, text, state.now)
            .map_err(|e| {
                tracing::warn!(client_id = %client.id, error = %e, "registered JWKS unusable");
                OAuthError::invalid_client()
            });
    }
    if let Some(uri) = &client.jwks_uri {
        return super::remote::keys_from_uri(state, client, uri, kid).await;
    }
    Err(OAuthError::invalid_client())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es256_jwks() -> String {
        let kp = ES256.generate_key_pair().unwrap();
        let mut jwk = kp.to_jwk_public_key();
        jwk.set_key_id("k1");
        format!("{{\"keys\":[{}]}}", jwk)
    }

    #[test]
    fn parses_public_set_for_registered_alg() {
        let set = parse_for_alg(&es256_jwks(), "ES256").unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.candidates(Some("k1")).count(), 1);
        assert_eq!(set.candidates(Some("other")).count(), 0);
        assert_eq!(set.candidates(None).count(), 1);
    }

    #[test]
    fn refuses_private_hmac_and_mismatched_sets() {
        let kp = ES256.generate_key_pair().unwrap();
        let private = format!("{{\"keys\":[{}]}}", kp.to_jwk_private_key());
        assert!(parse_for_alg(&private, "ES256")
            .unwrap_err()
            .contains("private"));
        assert!(parse_for_alg(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#, "HS256").is_err());
        assert!(
            parse_for_alg(&es256_jwks(), "RS256").is_err(),
            "EC key is unusable with RS256"
        );
        assert!(parse_for_alg("[]", "ES256").is_err());
        assert!(parse_for_alg(&es256_jwks(), "none").is_err());
    }

    #[test]
    fn parsed_sets_are_cached_per_client_alg_and_text() {
        let cache = KeyCache::default();
        let (a, b) = (es256_jwks(), es256_jwks());
        let first = cache.get_or_parse("app", "ES256", &a, 100).unwrap();
        let again = cache.get_or_parse("app", "ES256", &a, 101).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "parsed once");
        // Another text (a rotated key) or another client: parsed on its own.
        let rotated = cache.get_or_parse("app", "ES256", &b, 101).unwrap();
        assert!(!Arc::ptr_eq(&first, &rotated));
        let other = cache.get_or_parse("other", "ES256", &a, 101).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        // Unusable sets are refused every time, never cached.
        assert!(cache.get_or_parse("app", "RS256", &a, 101).is_err());
        assert!(cache.get_or_parse("app", "RS256", &a, 102).is_err());
        // After the expiry the text is parsed again.
        let later = cache
            .get_or_parse("app", "ES256", &a, 100 + CACHE_TTL)
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &later));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = KeyCache::with_capacity(8);
        let jwks = es256_jwks();
        for i in 0..100 {
            cache
                .get_or_parse(&format!("client-{i}"), "ES256", &jwks, 100)
                .unwrap();
            assert!(cache.cache.len() <= 8, "{} sets kept", cache.cache.len());
        }
    }
}
