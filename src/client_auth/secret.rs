//! `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1).
//!
//! Secrets are generated with 256 bits of randomness and stored as argon2id
//! (light parameters, see `secret::Argon2Profile`). A successful verification
//! is remembered as SHA-256 of the secret, keyed by the client and its stored
//! hash, so a busy service pays the argon2 cost once, not on every request; a
//! changed secret or a removed client never matches the memory.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::app::AppState;
use crate::error::OAuthError;
use crate::model::AuthMethod;
use crate::secret::{constant_time_eq, sha256, verify_secret};
use crate::store::clients::Client;

use super::AuthenticatedClient;

/// client id -> (stored PHC string, SHA-256 of the secret that verified)
#[derive(Default)]
pub struct VerifiedSecrets {
    map: Mutex<HashMap<String, (String, [u8; 32])>>,
}

const MAX_REMEMBERED: usize = 10_000;

impl VerifiedSecrets {
    fn remembered(&self, client_id: &str, phc: &str, digest: &[u8; 32]) -> bool {
        let Ok(map) = self.map.lock() else {
            return false;
        };
        match map.get(client_id) {
            Some((stored_phc, stored_digest)) => {
                stored_phc == phc && constant_time_eq(stored_digest, digest)
            }
            None => false,
        }
    }

    fn remember(&self, client_id: &str, phc: &str, digest: [u8; 32]) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_REMEMBERED {
                map.clear();
            }
            map.insert(client_id.to_string(), (phc.to_string(), digest));
        }
    }
}

pub async fn check(
    state: &AppState,
    client: Option<Client>,
    presented: &str,
    method: AuthMethod,
) -> Result<AuthenticatedClient, OAuthError> {
    let digest = sha256(presented.as_bytes());
    let phc = client
        .as_ref()
        .and_then(|c| c.secret_hash.clone())
        // An unknown client is verified against a dummy hash of the same
        // profile, so that it and a wrong secret take the same time.
        .unwrap_or_else(|| state.dummy_hashes.client_secret.clone());
    let cached = client
        .as_ref()
        .is_some_and(|c| state.verified_secrets.remembered(&c.id, &phc, &digest));
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
                state.verified_secrets.remember(&c.id, &phc, digest);
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
