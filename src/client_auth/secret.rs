//! `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1).
//!
//! Secrets are generated with 256 bits of randomness and stored as argon2id
//! (light parameters, see `secret::Argon2Profile`). A successful verification
//! is remembered as SHA-256 of the secret, keyed by the client and its stored
//! hash, so a busy service pays the argon2 cost once, not on every request; a
//! changed secret or a removed client never matches the memory. The memory
//! is a bounded cache (at most `MAX_REMEMBERED` clients; the least used go
//! first) and each entry is trusted for `REMEMBER_FOR` seconds of the server
//! clock, after which the secret is verified with argon2 again.

use std::sync::Arc;

use quick_cache::sync::Cache;

use super::Context;
use crate::error::OAuthError;
use crate::model::AuthMethod;
use crate::secret::{constant_time_eq, sha256, verify_secret};
use crate::store::clients::Client;

use super::AuthenticatedClient;

const MAX_REMEMBERED: usize = 10_000;
/// Seconds a verification is remembered.
const REMEMBER_FOR: i64 = 3600;

/// One secret that verified.
#[derive(Clone)]
struct Verified {
    /// The stored PHC string it verified against: a new secret (or a client
    /// removed and registered again) has another one, so it never matches.
    phc: Arc<str>,
    /// SHA-256 of the secret.
    digest: [u8; 32],
    /// Trusted until then (server clock).
    until: i64,
}

/// client id -> the last secret that verified for it.
pub struct VerifiedSecrets {
    cache: Cache<String, Verified>,
}

impl Default for VerifiedSecrets {
    fn default() -> Self {
        Self::with_capacity(MAX_REMEMBERED)
    }
}

impl VerifiedSecrets {
    fn with_capacity(capacity: usize) -> Self {
        VerifiedSecrets {
            cache: Cache::new(capacity),
        }
    }

    fn remembered(&self, client_id: &str, phc: &str, digest: &[u8; 32], now: i64) -> bool {
        self.cache
            .get(client_id)
            .is_some_and(|v| now < v.until && *v.phc == *phc && constant_time_eq(&v.digest, digest))
    }

    fn remember(&self, client_id: &str, phc: &str, digest: [u8; 32], now: i64) {
        self.cache.insert(
            client_id.to_string(),
            Verified {
                phc: phc.into(),
                digest,
                until: now.saturating_add(REMEMBER_FOR),
            },
        );
    }
}

pub async fn check(
    state: &Context<'_>,
    client: Option<Client>,
    presented: &str,
    method: AuthMethod,
) -> Result<AuthenticatedClient, OAuthError> {
    let digest = sha256(presented.as_bytes());
    let now = state.now;
    let phc = client
        .as_ref()
        .and_then(|c| c.secret_hash.clone())
        // An unknown client is verified against a dummy hash of the same
        // profile, so that it and a wrong secret take the same time.
        .unwrap_or_else(|| state.dummy_secret_hash.to_string());
    let cached = client.as_ref().is_some_and(|c| {
        state
            .caches
            .verified_secrets
            .remembered(&c.id, &phc, &digest, now)
    });
    let ok = if cached {
        true
    } else {
        let secret = presented.to_string();
        let phc_for_check = phc.clone();
        // argon2 is CPU work: keep it off the async executor threads.
        let verified = actix_web::web::block(move || verify_secret(&secret, &phc_for_check))
            .await
            .map_err(OAuthError::server_error)?;
        if verified {
            if let Some(c) = &client {
                state
                    .caches
                    .verified_secrets
                    .remember(&c.id, &phc, digest, now);
            }
        }
        verified
    };
    match client {
        Some(client) if ok && client.auth_method == method && client.secret_hash.is_some() => {
            Ok(AuthenticatedClient {
                client,
                method,
                assertion: None,
            })
        }
        _ => Err(OAuthError::invalid_client()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHC: &str = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA";

    #[test]
    fn only_the_same_secret_against_the_same_hash_matches() {
        let v = VerifiedSecrets::default();
        let digest = sha256(b"s3cret");
        assert!(!v.remembered("app", PHC, &digest, 100));
        v.remember("app", PHC, digest, 100);
        assert!(v.remembered("app", PHC, &digest, 100));
        assert!(
            !v.remembered("app", PHC, &sha256(b"other"), 100),
            "another secret"
        );
        assert!(
            !v.remembered("app", "$argon2id$v=19$new", &digest, 100),
            "the secret was changed (another stored hash)"
        );
        assert!(!v.remembered("other-app", PHC, &digest, 100));
    }

    #[test]
    fn a_verification_is_trusted_for_a_while_only() {
        let v = VerifiedSecrets::default();
        let digest = sha256(b"s3cret");
        v.remember("app", PHC, digest, 100);
        assert!(v.remembered("app", PHC, &digest, 100 + REMEMBER_FOR - 1));
        assert!(!v.remembered("app", PHC, &digest, 100 + REMEMBER_FOR));
        // Verified again: trusted again.
        v.remember("app", PHC, digest, 100 + REMEMBER_FOR);
        assert!(v.remembered("app", PHC, &digest, 100 + REMEMBER_FOR));
    }

    #[test]
    fn memory_is_bounded_without_forgetting_everything() {
        let v = VerifiedSecrets::with_capacity(20);
        let digest = sha256(b"s3cret");
        v.remember("busy", PHC, digest, 100);
        for i in 0..1000 {
            v.remember(&format!("client-{i}"), PHC, digest, 100);
            // The busy client keeps authenticating meanwhile.
            let _ = v.remembered("busy", PHC, &digest, 100);
            assert!(v.cache.len() <= 20, "{} remembered", v.cache.len());
        }
        assert!(v.remembered("busy", PHC, &digest, 100));
    }
}
