//! What client authentication works with: per request, the store, the
//! settings and the time; between requests, caches that never change an
//! answer (a verified secret, a parsed or fetched key set), the failure
//! budgets and the dummy hash for unknown clients.

use super::jwks::KeyCache;
use super::remote::RemoteJwksCache;
use super::secret::VerifiedSecrets;
use crate::config::Settings;
use crate::fetch::Fetcher;
use crate::limits::FailureBudget;
use crate::store::Store;

/// The caches, kept for the life of the server (per instance).
#[derive(Default)]
pub struct Caches {
    pub verified_secrets: VerifiedSecrets,
    pub client_keys: KeyCache,
    pub remote_jwks: RemoteJwksCache,
}

/// One request's view of what client authentication needs.
pub struct Context<'a> {
    pub store: &'a Store,
    pub settings: &'a Settings,
    pub now: i64,
    pub caches: &'a Caches,
    /// The one outbound fetcher (for `jwks_uri`s and metadata documents).
    pub fetcher: &'a Fetcher,
    /// Which client an id names (`client_registry::resolve`).
    pub registry: &'a crate::client_registry::Registry,
    pub auth_failures: &'a FailureBudget,
    /// Verified against for unknown clients, so they cost what a known one does.
    pub dummy_secret_hash: &'a str,
    /// The request came to `/bc-authorize`, whose URL an assertion may then
    /// name as its audience (CIBA Core §7.1).
    pub at_backchannel_endpoint: bool,
}
