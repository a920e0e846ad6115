//! JWKS fetched from a client's `jwks_uri` (RFC 7591 §2, OIDC Core §10.1.1).
//! Fetched with a timeout and a size cap, cached, and refetched once when an
//! assertion names a `kid` the cached set lacks — at most once per
//! `REFETCH_INTERVAL` per URI, so unknown kids cannot make deputy hammer a
//! client's server. Only `https` URIs, unless the development setting
//! `allow_loopback_jwks_uri` admits `http` on a loopback host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use super::jwks::ClientKeys;
use crate::app::AppState;
use crate::error::OAuthError;
use crate::store::clients::Client;

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 64 * 1024;
const CACHE_TTL: i64 = 300;
const REFETCH_INTERVAL: i64 = 30;

#[derive(Default)]
pub struct RemoteJwksCache {
    /// uri -> (fetched at, JWKS text)
    map: Mutex<HashMap<String, (i64, String)>>,
}

impl RemoteJwksCache {
    fn get(&self, uri: &str) -> Option<(i64, String)> {
        self.map.lock().ok()?.get(uri).cloned()
    }
    fn put(&self, uri: &str, at: i64, text: String) {
        if let Ok(mut m) = self.map.lock() {
            if m.len() > 1000 {
                m.clear();
            }
            m.insert(uri.to_string(), (at, text));
        }
    }
}

/// Whether deputy may fetch from this URI under the current settings.
pub fn uri_allowed(uri: &str, allow_loopback: bool) -> bool {
    let Ok(u) = url::Url::parse(uri) else {
        return false;
    };
    match u.scheme() {
        "https" => u.host_str().is_some(),
        "http" => {
            allow_loopback
                && matches!(
                    u.host_str(),
                    Some("127.0.0.1") | Some("[::1]") | Some("localhost")
                )
        }
        _ => false,
    }
}

async fn fetch(uri: &str) -> Result<String, String> {
    let client = awc::Client::builder().timeout(FETCH_TIMEOUT).finish();
    let mut resp = client
        .get(uri)
        .insert_header(("Accept", "application/json"))
        .send()
        .await
        .map_err(|e| format!("fetch failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("fetch answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.next().await {
        let chunk = chunk.map_err(|e| format!("read failed: {e}"))?;
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err("JWKS larger than the size cap".to_string());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "JWKS is not UTF-8".to_string())
}

pub async fn keys_from_uri(
    state: &AppState,
    client: &Client,
    uri: &str,
    kid: Option<&str>,
) -> Result<Arc<ClientKeys>, OAuthError> {
    if !uri_allowed(uri, state.settings.allow_loopback_jwks_uri) {
        tracing::warn!(client_id = %client.id, "jwks_uri not allowed by settings");
        return Err(OAuthError::invalid_client());
    }
    let now = state.clock.now();
    let cache = &state.remote_jwks;
    let cached = cache.get(uri);
    let parse = |text: &str| {
        state
            .client_keys
            .get_or_parse(&client.id, &client.assertion_alg, text)
    };
    if let Some((at, text)) = &cached {
        let fresh = now - at < CACHE_TTL;
        if let Ok(keys) = parse(text) {
            let knows_kid = kid.is_none_or(|k| keys.candidates(Some(k)).next().is_some());
            // An unknown kid may mean the client rotated: refetch, but not too often.
            if fresh && (knows_kid || now - at < REFETCH_INTERVAL) {
                return Ok(keys);
            }
        }
    }
    match fetch(uri).await {
        Ok(text) => {
            cache.put(uri, now, text.clone());
            parse(&text).map_err(|e| {
                tracing::warn!(client_id = %client.id, error = %e, "fetched JWKS unusable");
                OAuthError::invalid_client()
            })
        }
        Err(e) => {
            tracing::warn!(client_id = %client.id, error = %e, "jwks_uri fetch failed");
            // Keep using what we had rather than fail every request on a blip.
            match cached {
                Some((_, text)) => parse(&text).map_err(|_| OAuthError::invalid_client()),
                None => Err(OAuthError::invalid_client()),
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
        assert!(!uri_allowed("http://keys.example/jwks", true));
        assert!(!uri_allowed("http://127.0.0.1:9/jwks", false));
        assert!(uri_allowed("http://127.0.0.1:9/jwks", true));
        assert!(!uri_allowed("file:///etc/passwd", true));
    }
}
