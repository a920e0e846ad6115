//! Dynamic client registration (RFC 7591): a client registers itself at
//! `/register`, under the `registration` setting. `token`: with an initial
//! access token (`deputy registration token create`), any method deputy
//! supports; `open`: anyone, public clients only. The same metadata rules as
//! metadata documents (`policy::client_metadata`). A registered client that
//! stays unused for `registration_unused_ttl` is removed (see `resolve`;
//! each registration also removes a few such clients, with the same cascade
//! as `deputy client remove`), so an open endpoint cannot grow the database
//! without bound.

use serde_json::Value;

use super::{described_client, Lookup};
use crate::audit::{AuditEvent, Mode};
use crate::config::RegistrationMode;
use crate::error::OAuthError;
use crate::model::{AuthMethod, Registration};
use crate::policy::client_metadata::{self, ClientMetadata, MetadataError, Rules};
use crate::secret::{hash_secret, new_secret, random_token, sha256_b64, Argon2Profile};
use crate::store::clients::Client;
use crate::store::Outcome;

/// Unused clients removed per registration at most.
const SWEEP: i64 = 10;

pub struct RegistrationRequest<'a> {
    pub metadata: &'a Value,
    /// `Authorization: Bearer` of the request, if any.
    pub initial_access_token: Option<&'a str>,
    pub address: &'a str,
}

#[derive(Debug)]
pub enum RegistrationError {
    /// Registration is off: there is no endpoint.
    Off,
    /// RFC 7591 §3 with RFC 6750 §3.1: no or no usable initial access token.
    InvalidToken,
    /// RFC 7591 §3.2.2.
    Metadata(MetadataError),
    Store(OAuthError),
}

impl From<OAuthError> for RegistrationError {
    fn from(e: OAuthError) -> Self {
        RegistrationError::Store(e)
    }
}

pub struct Registered {
    pub client: Client,
    pub metadata: ClientMetadata,
    /// Only for `client_secret_basic` / `client_secret_post`; shown once.
    pub secret: Option<String>,
}

pub async fn register(
    l: &Lookup<'_>,
    req: RegistrationRequest<'_>,
) -> Result<Registered, RegistrationError> {
    let rules = match l.settings.registration {
        RegistrationMode::Off => return Err(RegistrationError::Off),
        RegistrationMode::Token => {
            if req.initial_access_token.is_none() {
                return Err(RegistrationError::InvalidToken);
            }
            Rules {
                methods: &[
                    AuthMethod::None,
                    AuthMethod::PrivateKeyJwt,
                    AuthMethod::ClientSecretBasic,
                    AuthMethod::ClientSecretPost,
                ],
                default_method: AuthMethod::ClientSecretBasic,
            }
        }
        // Anyone may register: nothing that holds a secret or a key deputy
        // would trust without knowing who registered it.
        RegistrationMode::Open => Rules {
            methods: &[AuthMethod::None],
            default_method: AuthMethod::ClientSecretBasic,
        },
    };
    let meta = client_metadata::parse(req.metadata, rules).map_err(RegistrationError::Metadata)?;
    let now = l.now;
    let id = random_token(24);
    let mut client = described_client(&id, &meta, Registration::Dynamic, now);
    let secret = meta.auth_method.uses_secret().then(new_secret);
    if let Some(s) = &secret {
        client.secret_hash =
            Some(hash_secret(s, Argon2Profile::GeneratedSecret).map_err(OAuthError::server_error)?);
    }
    let token_hash = req.initial_access_token.map(|t| sha256_b64(t.as_bytes()));
    let stored = client.clone();
    let address = req.address.to_string();
    let unused_before = now - l.settings.registration_unused_ttl;
    l.store
        .transact(move |c| {
            if let Some(h) = &token_hash {
                if !crate::store::registration_tokens::spend(c, h, now)? {
                    return Ok(Outcome::Refuse(()));
                }
            }
            for old in crate::store::clients::unused_dynamic(c, unused_before, SWEEP)? {
                crate::admin::clients::remove(c, &old, &crate::admin::Origin::Expiry, now)?;
            }
            crate::store::clients::insert(c, &stored)?;
            let mut e = AuditEvent::new(now, "client_registered", Mode::System)
                .client(&stored.id, stored.kind.as_str());
            e.detail = Some(
                serde_json::json!({
                    "registration": "dynamic",
                    "auth_method": stored.auth_method.as_str(),
                    "redirect_uris": stored.redirect_uris,
                    "with_initial_access_token": token_hash.is_some(),
                    "address": address,
                })
                .to_string(),
            );
            crate::store::audit::insert(c, &e)?;
            Ok(Outcome::Commit(()))
        })
        .await
        .map_err(OAuthError::from)?
        .map_err(|()| RegistrationError::InvalidToken)?;
    Ok(Registered {
        client,
        metadata: meta,
        secret,
    })
}

/// Create an initial access token (`deputy registration token create`).
/// Returns the token (shown once) and what is stored.
pub fn new_initial_access_token(
    now: i64,
    expires_in: Option<i64>,
    max_uses: Option<i64>,
) -> (String, crate::store::registration_tokens::RegistrationToken) {
    let token = random_token(32);
    let record = crate::store::registration_tokens::RegistrationToken {
        token_hash: sha256_b64(token.as_bytes()),
        created_at: now,
        expires_at: expires_in.map(|s| now.saturating_add(s)),
        max_uses,
    };
    (token, record)
}
