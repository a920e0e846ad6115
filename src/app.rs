//! The application state every handler receives.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::keys::Keys;
use crate::store::Store;

pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub keys: Arc<Keys>,
    /// The one gate for deputy's own tokens (built on `keys`).
    pub own_tokens: crate::token::gate::OwnTokens,
    pub clock: SharedClock,
    /// Client authentication's caches (per instance, never deciding an answer).
    pub client_auth: crate::client_auth::Caches,
    /// The one outbound fetcher: its bound on fetches in progress is global.
    pub fetcher: crate::fetch::Fetcher,
    /// Fetches of client metadata documents in progress and failed (per instance).
    pub client_registry: crate::client_registry::Registry,
    pub registration_by_address: crate::limits::RateLimiter,
    pub throttle: crate::login::throttle::Throttle,
    /// Throttled login attempts waiting to be audited as bursts.
    pub throttled_logins: crate::login::throttled::ThrottledLogins,
    /// The key refresh successors are derived with (loaded once from the store).
    pub refresh_key: std::sync::OnceLock<String>,
    /// The key the account page's CSRF tokens are derived with (a server
    /// secret in the store, the same on every instance; loaded once).
    pub account_csrf_key: std::sync::OnceLock<String>,
    /// The key DPoP nonces are derived with (shared by every instance
    /// through the store, loaded once).
    pub dpop_nonce_key: std::sync::OnceLock<String>,
    /// Verifiers of DPoP proof keys seen before (per instance; never
    /// changes an answer).
    pub proof_verifiers: crate::dpop::ProofVerifiers,
    pub token_by_client: crate::limits::RateLimiter,
    pub token_by_address: crate::limits::RateLimiter,
    pub login_by_address: crate::limits::RateLimiter,
    /// Failed client authentications per client id and per address.
    pub auth_failures: crate::limits::FailureBudget,
    /// Verified against for unknown people and clients (equal work).
    pub dummy_hashes: crate::secret::DummyHashes,
}

/// The key-encryption key a PostgreSQL deployment seals its signing keys
/// with; required there.
pub fn key_encryption_key(settings: &Settings) -> Result<crate::keys::sealed::Kek, String> {
    if settings.key_encryption_key_file.as_os_str().is_empty() {
        return Err(
            "setting `key_encryption_key_file`: required when `database` is a \
             PostgreSQL URL (32 random bytes, base64: `openssl rand -base64 32`)"
                .to_string(),
        );
    }
    crate::keys::sealed::Kek::from_file(&settings.key_encryption_key_file)
        .map_err(|e| format!("setting `key_encryption_key_file`: {e}"))
}

impl AppState {
    /// Write the throttled-login bursts that ended by `now` (see
    /// `login::flush_throttled`).
    pub async fn flush_throttled(&self, now: i64) -> Result<usize, crate::store::StoreError> {
        crate::login::flush_throttled(&self.store, &self.throttled_logins, now).await
    }

    /// What client authentication needs, for one request.
    pub fn auth_context(&self) -> crate::client_auth::Context<'_> {
        crate::client_auth::Context {
            store: &self.store,
            settings: &self.settings,
            now: self.clock.now(),
            caches: &self.client_auth,
            fetcher: &self.fetcher,
            registry: &self.client_registry,
            auth_failures: &self.auth_failures,
            dummy_secret_hash: &self.dummy_hashes.client_secret,
            at_backchannel_endpoint: false,
        }
    }

    /// What the grants need, for one request.
    /// What looking up a client needs (`client_registry::resolve`).
    pub fn client_lookup(&self) -> crate::client_registry::Lookup<'_> {
        crate::client_registry::Lookup {
            store: &self.store,
            settings: &self.settings,
            fetcher: &self.fetcher,
            registry: &self.client_registry,
            now: self.clock.now(),
        }
    }

    pub fn grant_context(&self) -> crate::grant::GrantContext<'_> {
        crate::grant::GrantContext {
            now: self.clock.now(),
            settings: &self.settings,
            ring: self.keys.ring(),
            store: &self.store,
            own_tokens: &self.own_tokens,
            refresh_key: &self.refresh_key,
            proof: None,
        }
    }

    /// Open the store and keys described by `settings`.
    pub fn open(settings: Settings, clock: SharedClock) -> Result<AppState, String> {
        // On PostgreSQL the key file is read first: a start-up refused for
        // want of it writes nothing (opening the store migrates the schema).
        let kek = match settings.database.to_str() {
            Some(url) if crate::store::postgres::is_postgres_url(url) => {
                Some(key_encryption_key(&settings)?)
            }
            _ => None,
        };
        let store = Store::open(&settings.database, 2)
            .map_err(|e| format!("setting `database` ({}): {e}", settings.database_shown()))?;
        let keys = match &store {
            Store::Sqlite(_) => {
                crate::config::ensure_writable_dir("keys_dir", &settings.keys_dir)
                    .map_err(|e| e.to_string())?;
                Keys::open(&settings.keys_dir, clock.now()).map_err(|e| {
                    format!("setting `keys_dir` ({}): {e}", settings.keys_dir.display())
                })?
            }
            Store::Postgres(pg) => Keys::open_source(
                crate::keys::KeySource::Database {
                    store: pg.clone(),
                    kek: match kek {
                        Some(k) => k,
                        None => key_encryption_key(&settings)?,
                    },
                },
                clock.now(),
            )
            .map_err(|e| format!("setting `key_encryption_key_file`: {e}"))?,
        };
        crate::token::use_random_jti(matches!(store, Store::Postgres(_)));
        let dummy_hashes = crate::secret::DummyHashes::new()?;
        let keys = Arc::new(keys);
        let own_tokens = crate::token::gate::OwnTokens::new(
            keys.clone(),
            &settings.issuer,
            settings.max_jwt_lifetime(),
        );
        Ok(AppState {
            own_tokens,
            dummy_hashes,
            token_by_client: crate::limits::RateLimiter::new(settings.rate_limit_client),
            token_by_address: crate::limits::RateLimiter::new(settings.rate_limit_address),
            login_by_address: crate::limits::RateLimiter::new(settings.rate_limit_login),
            fetcher: crate::fetch::Fetcher::new(crate::fetch::Policy::from_settings(&settings)),
            client_registry: crate::client_registry::Registry::default(),
            registration_by_address: crate::limits::RateLimiter::new(
                settings.rate_limit_registration,
            ),
            auth_failures: crate::limits::FailureBudget::new(
                settings.auth_failure_limit,
                settings.auth_failure_window,
            ),
            settings: Arc::new(settings),
            store,
            keys,
            clock,
            client_auth: Default::default(),
            throttle: Default::default(),
            throttled_logins: Default::default(),
            refresh_key: std::sync::OnceLock::new(),
            account_csrf_key: std::sync::OnceLock::new(),
            dpop_nonce_key: std::sync::OnceLock::new(),
            proof_verifiers: crate::dpop::ProofVerifiers::default(),
        })
    }
}
