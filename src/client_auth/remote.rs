//! JWKS fetched from a client's `jwks_uri` (RFC 7591 §2, OIDC Core §10.1.1;
//! the keys that verify its assertions, RFC 7523 §3).
//!
//! Fetched through the safe fetcher ([`crate::fetch`]: one deadline over the
//! whole fetch, a 64 KiB cap, `https` only, no redirects, public addresses
//! only, a bound on fetches in progress), one fetch per URI at a time, and a
//! URI whose fetch failed is left alone for a backoff. A fetched set is
//! cached for `CACHE_TTL` and refetched when an assertion names a `kid` it
//! lacks (the client rotated) — at most once per `REFETCH_INTERVAL` per URI,
//! so unknown kids cannot make deputy hammer a client's server. When a fetch
//! fails the last good set is still used. Only `https` URIs, unless the
//! development setting `allow_loopback_fetch` admits loopback.
//!
//! The sets are kept in a bounded cache (`CACHED_URIS`; URIs not used
//! recently go first). Entries carry the time they were fetched and are not
//! expired by the cache itself: `CACHE_TTL` decides when a set is fetched
//! again, on the server clock, and a set older than that is still the last
//! good one when the new fetch fails.

use std::sync::Arc;

use quick_cache::sync::Cache;

use super::jwks::ClientKeys;
use super::Context;
use crate::error::{ErrorCode, OAuthError};
use crate::fetch::{FetchError, Flights, Policy, Request};
use crate::store::clients::Client;

const MAX_JWKS_BYTES: usize = 64 * 1024;
const CACHE_TTL: i64 = 300;
const REFETCH_INTERVAL: i64 = 30;
/// URIs whose sets (and failures) are remembered.
const CACHED_URIS: usize = 1000;
/// RFC 7517 §8.5.1 names the JWK Set media type; plain JSON is common.
const JWKS_ACCEPT: &str = "application/jwk-set+json, application/json";

pub struct RemoteJwksCache {
    /// uri -> (fetched at, JWKS text)
    sets: Cache<String, (i64, Arc<str>)>,
    flights: Flights,
}

impl Default for RemoteJwksCache {
    fn default() -> Self {
        RemoteJwksCache {
            sets: Cache::new(CACHED_URIS),
            flights: Flights::new(CACHED_URIS),
        }
    }
}

impl RemoteJwksCache {
    fn get(&self, uri: &str) -> Option<(i64, Arc<str>)> {
        self.sets.get(uri)
    }
    fn put(&self, uri: &str, at: i64, text: Arc<str>) {
        self.sets.insert(uri.to_string(), (at, text));
    }
}

/// Whether a client may register this `jwks_uri` under the current settings
/// (the URL policy of [`crate::fetch`]; where it resolves to is checked at
/// fetch time).
pub fn uri_allowed(uri: &str, allow_loopback: bool) -> bool {
    Policy { allow_loopback }.check_url(uri).is_ok()
}

fn knows(keys: &ClientKeys, kid: Option<&str>) -> bool {
    kid.is_none_or(|k| keys.candidates(Some(k)).next().is_some())
}

/// 503: deputy's own capacity for outbound fetches is used up; the client
/// did nothing wrong and may retry once fetches in progress have ended.
fn fetch_capacity_exhausted() -> OAuthError {
    let mut e = OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the server is busy, retry later",
    );
    e.retry_after = Some(crate::fetch::DEADLINE.as_secs().max(1));
    e
}

pub async fn keys_from_uri(
    state: &Context<'_>,
    client: &Client,
    uri: &str,
    kid: Option<&str>,
) -> Result<Arc<ClientKeys>, OAuthError> {
    if let Err(why) = state.fetcher.policy().check_url(uri) {
        tracing::warn!(client_id = %client.id, reason = %why, "jwks_uri not allowed by settings");
        return Err(OAuthError::invalid_client());
    }
    let now = state.now;
    let cache = &state.caches.remote_jwks;
    let cached = cache.get(uri);
    let parse = |text: &str| {
        state
            .caches
            .client_keys
            .get_or_parse(&client.id, &client.assertion_alg, text, now)
    };
    if let Some((at, text)) = &cached {
        let age = now - at;
        if age < CACHE_TTL {
            match parse(text) {
                // An unknown kid may mean the client rotated: refetch, but not too often.
                Ok(keys) if knows(&keys, kid) || age < REFETCH_INTERVAL => return Ok(keys),
                // An unusable set is not refetched more often either.
                Err(e) if age < REFETCH_INTERVAL => {
                    tracing::warn!(client_id = %client.id, error = %e, "fetched JWKS unusable");
                    return Err(OAuthError::invalid_client());
                }
                _ => {}
            }
        }
    }
    let request = Request {
        url: uri,
        accept: JWKS_ACCEPT,
        max_bytes: MAX_JWKS_BYTES,
    };
    // The caller that runs the shared fetch logs its failure, once.
    let outcome = cache
        .flights
        .run(uri, now, || async {
            let fetched =
                state.fetcher.fetch(&request).await.and_then(|f| {
                    match std::str::from_utf8(&f.body) {
                        Ok(_) => Ok(f),
                        Err(_) => Err(FetchError::Unusable("JWKS is not UTF-8")),
                    }
                });
            if let Err(e) = &fetched {
                tracing::warn!(client_id = %client.id, error = %e, "jwks_uri fetch failed");
            }
            fetched
        })
        .await;
    match outcome {
        Ok(fetched) => {
            let text: Arc<str> = String::from_utf8_lossy(&fetched.body).into();
            cache.put(uri, now, text.clone());
            parse(&text).map_err(|e| {
                tracing::warn!(client_id = %client.id, error = %e, "fetched JWKS unusable");
                OAuthError::invalid_client()
            })
        }
        Err(e) => {
            if let FetchError::BackingOff { .. } = e {
                tracing::info!(client_id = %client.id, error = %e, "jwks_uri not fetched");
            }
            // Keep using what we had rather than fail every request on a blip.
            let last_good = cached.and_then(|(_, text)| parse(&text).ok());
            match (e, last_good) {
                // Our capacity, not the client's fault: 503, unless the last
                // good set has the key the assertion names.
                (FetchError::Busy, Some(keys)) if knows(&keys, kid) => Ok(keys),
                (FetchError::Busy, _) => Err(fetch_capacity_exhausted()),
                (_, Some(keys)) => Ok(keys),
                // The client's key server is the client's problem.
                (_, None) => Err(OAuthError::invalid_client()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_unless_loopback_allowed() {
        assert!(uri_allowed("https://keys.example/jwks", false));
        assert!(uri_allowed("https://127.0.0.1:8443/jwks", false));
        assert!(!uri_allowed("http://keys.example/jwks", true));
        assert!(!uri_allowed("http://127.0.0.1:9/jwks", false));
        assert!(uri_allowed("http://127.0.0.1:9/jwks", true));
        assert!(uri_allowed("http://localhost:9/jwks", true));
        assert!(!uri_allowed("file:///etc/passwd", true));
        assert!(!uri_allowed("https://user:pw@keys.example/jwks", false));
    }
}
