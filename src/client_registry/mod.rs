//! Which client a `client_id` names, and whether it may be used now: the one
//! owner of that rule for `/authorize` and client authentication.
//!
//! * A client the operator registered is used as stored.
//! * A blocked client is unknown, whoever registered it.
//! * A client registered at `/register` (RFC 7591) is unknown once unused
//!   for `registration_unused_ttl`; its use is noted at most once an hour.
//! * A `client_id` that is an https URL with a path names a client that
//!   describes itself in the document at that URL (Client ID Metadata
//!   Documents, draft-ietf-oauth-client-id-metadata-document): the stored
//!   row is a cache of the last document, fetched again when it expires.
//!   The cache is in the database, so every instance sees the same client.

pub mod metadata_document;
pub mod registration;

use crate::config::{Settings, Switch};
use crate::error::{ErrorCode, OAuthError};
use crate::fetch::{Fetcher, Flights};
use crate::model::{ClientKind, GrantType, Registration};
use crate::policy::client_metadata::ClientMetadata;
use crate::store::clients::{Client, ClientOrigin};
use crate::store::Store;

/// Metadata document URLs whose fetches (and failures) are remembered.
const REMEMBERED_URLS: usize = 1000;
/// The longest `client_id` looked up at all.
const MAX_CLIENT_ID: usize = 2048;

/// Per instance: one fetch per document URL at a time, and a URL whose
/// fetch failed left alone for a backoff. Never decides more than "not now".
pub struct Registry {
    flights: Flights,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            flights: Flights::new(REMEMBERED_URLS),
        }
    }
}

/// What a lookup works with.
pub struct Lookup<'a> {
    pub store: &'a Store,
    pub settings: &'a Settings,
    pub fetcher: &'a Fetcher,
    pub registry: &'a Registry,
    pub now: i64,
}

/// Why a client cannot be used now, beyond "no such client".
#[derive(Debug)]
pub enum Refusal {
    /// The id names a metadata document deputy cannot use (logged; the
    /// person sees a page, a token request gets `invalid_client`).
    Document(String),
    /// The store failed, or deputy's own fetch capacity is used up.
    Unavailable(OAuthError),
}

impl From<OAuthError> for Refusal {
    fn from(e: OAuthError) -> Self {
        Refusal::Unavailable(e)
    }
}

/// The client `id` names, if it may be used now.
pub async fn resolve(l: &Lookup<'_>, id: &str) -> Result<Option<Client>, Refusal> {
    if id.is_empty() || id.len() > MAX_CLIENT_ID {
        return Ok(None);
    }
    let row = {
        let id = id.to_string();
        l.store
            .read(move |c| crate::store::clients::get(c, &id))
            .await
            .map_err(OAuthError::from)?
    };
    match row {
        Some(c) if c.origin.blocked_at.is_some() => Ok(None),
        Some(c) => match c.origin.registration {
            Registration::Operator => Ok(Some(c)),
            Registration::Dynamic => dynamic(l, c).await,
            Registration::MetadataDocument => {
                if l.settings.client_metadata_documents == Switch::Off {
                    return Ok(None);
                }
                if c.origin.metadata_expires_at.is_some_and(|t| l.now < t) {
                    return Ok(Some(c));
                }
                metadata_document::fetch_and_store(l, id).await.map(Some)
            }
        },
        None if l.settings.client_metadata_documents == Switch::On
            && metadata_document::is_document_url(id) =>
        {
            metadata_document::fetch_and_store(l, id).await.map(Some)
        }
        None => Ok(None),
    }
}

/// A dynamically registered client: unknown once unused too long.
async fn dynamic(l: &Lookup<'_>, c: Client) -> Result<Option<Client>, Refusal> {
    let last = c.origin.last_used_at.unwrap_or(c.created_at);
    if last <= l.now - l.settings.registration_unused_ttl {
        return Ok(None);
    }
    // The use is recorded at most once per interval (an hour, or a tenth of
    // a shorter setting), so a client in use is never taken for unused.
    let interval = (l.settings.registration_unused_ttl / 10).clamp(1, 3600);
    if last <= l.now - interval {
        let (id, now) = (c.id.clone(), l.now);
        l.store
            .write(move |conn| crate::store::clients::touch(conn, &id, now, interval))
            .await
            .map_err(OAuthError::from)?;
    }
    Ok(Some(c))
}

/// The client a self-description makes: an agent (unless the operator
/// registers it otherwise), allowed the authorization code and refresh
/// grants only, for the resources and scopes the operator defined
/// (decided at `/authorize`, see [`effective_for_resource`]).
pub fn described_client(
    id: &str,
    meta: &ClientMetadata,
    registration: Registration,
    now: i64,
) -> Client {
    Client {
        id: id.to_string(),
        kind: ClientKind::Agent,
        name: meta.client_name.clone().unwrap_or_else(|| id.to_string()),
        auth_method: meta.auth_method,
        secret_hash: None,
        jwks: meta.jwks.clone(),
        jwks_uri: meta.jwks_uri.clone(),
        assertion_alg: meta.assertion_alg.clone(),
        redirect_uris: meta.redirect_uris.clone(),
        post_logout_redirect_uris: meta.post_logout_redirect_uris.clone(),
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: Vec::new(),
        audiences: Vec::new(),
        created_at: now,
        id_token_claims: false,
        id_token_alg: meta.id_token_alg,
        require_dpop: meta.dpop_bound_access_tokens,
        origin: ClientOrigin {
            registration,
            client_uri: meta.client_uri.clone(),
            logo_uri: meta.logo_uri.clone(),
            metadata_expires_at: None,
            blocked_at: None,
            last_used_at: (registration == Registration::Dynamic).then_some(now),
        },
    }
}

/// A self-described client may ask for any resource the operator registered
/// (`deputy resource add`) and the scopes that resource defines: the person
/// decides on the consent page. An operator-registered client keeps its own
/// lists.
pub async fn effective_for_resource(
    store: &Store,
    mut client: Client,
    resource: Option<&str>,
) -> Result<Client, OAuthError> {
    if !client.origin.registration.self_described() {
        return Ok(client);
    }
    let Some(resource) = resource.filter(|r| !r.is_empty() && r.len() <= 2048) else {
        return Ok(client);
    };
    let r = resource.to_string();
    let scopes = store
        .read(move |c| {
            if crate::store::resources::get(c, &r)?.is_some() {
                Ok(Some(crate::store::resources::scope_descriptions(c, &r)?))
            } else {
                Ok(None)
            }
        })
        .await?;
    if let Some(scopes) = scopes {
        client.audiences = vec![resource.to_string()];
        client.scopes = scopes.into_iter().map(|(name, _)| name).collect();
    }
    Ok(client)
}

/// 503 for a refusal that is deputy's own trouble.
pub fn unavailable(why: &str) -> OAuthError {
    let mut e = OAuthError::new(ErrorCode::TemporarilyUnavailable, why.to_string());
    e.retry_after = Some(crate::fetch::DEADLINE.as_secs().max(1));
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AuthMethod;
    use crate::policy::client_metadata::{parse, Rules};

    #[test]
    fn a_self_described_client_asking_for_dpop_requires_it_rfc9449_s5_2() {
        let rules = Rules {
            methods: &[AuthMethod::None],
            default_method: AuthMethod::None,
        };
        let doc = serde_json::json!({
            "redirect_uris": ["https://app.example/cb"],
            "dpop_bound_access_tokens": true
        });
        let meta = parse(&doc, rules).unwrap();
        let c = described_client(
            "https://app.example/c.json",
            &meta,
            Registration::MetadataDocument,
            7,
        );
        assert!(c.require_dpop);
        let plain = parse(
            &serde_json::json!({"redirect_uris": ["https://app.example/cb"]}),
            rules,
        )
        .unwrap();
        assert!(
            !described_client(
                "https://app.example/c.json",
                &plain,
                Registration::Dynamic,
                7
            )
            .require_dpop
        );
    }
}
