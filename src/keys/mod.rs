//! deputy's signing keys and the JWKS.
//!
//! Key life cycle (see `KeyState`): a rotated key is *pending* — published in the
//! JWKS but not yet signing — for `key_prepublish` seconds, so relying parties'
//! JWKS caches (max-age `jwks_max_age`) hold it before the first token it signs
//! arrives. Then it is *active*. The key it replaced is *retired*: still
//! published until every token it signed has expired, then *expired* and gone
//! from the JWKS.

pub mod db;
pub mod file;
pub mod sealed;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use josekit::jws::alg::ecdsa::{EcdsaJwsSigner, EcdsaJwsVerifier};
use josekit::jws::ES256;
use serde_json::{json, Value};

pub use file::KeyMeta;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Pending,
    Active,
    Retired,
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Expired => "expired",
        }
    }
    pub fn is_published(self) -> bool {
        self != KeyState::Expired
    }
}

pub struct LoadedKey {
    pub meta: KeyMeta,
    pub signer: EcdsaJwsSigner,
    pub verifier: EcdsaJwsVerifier,
    pub jwk: Value,
}

/// An immutable snapshot of the keys; replaced whole when the directory changes.
pub struct KeyRing {
    /// Sorted by activation time, oldest first.
    keys: Vec<LoadedKey>,
}

impl KeyRing {
    fn build(stored: Vec<file::StoredKey>) -> Result<KeyRing, String> {
        let mut keys = Vec::with_capacity(stored.len());
        for k in stored {
            let signer = ES256
                .signer_from_pem(k.private_pem.as_bytes())
                .map_err(|e| format!("key {}: {e}", k.meta.kid))?;
            let verifier = ES256
                .verifier_from_pem(k.public_pem.as_bytes())
                .map_err(|e| format!("key {}: {e}", k.meta.kid))?;
            let jwk = json!({
                "kty": "EC", "crv": "P-256", "x": k.x, "y": k.y,
                "kid": k.meta.kid, "use": "sig", "alg": "ES256",
            });
            keys.push(LoadedKey {
                meta: k.meta,
                signer,
                verifier,
                jwk,
            });
        }
        keys.sort_by(|a, b| {
            (a.meta.activates_at, a.meta.serial, &a.meta.kid).cmp(&(
                b.meta.activates_at,
                b.meta.serial,
                &b.meta.kid,
            ))
        });
        Ok(KeyRing { keys })
    }

    /// Index of the key that signs now: the latest one already activated.
    fn active_index(&self, now: i64) -> Option<usize> {
        self.keys.iter().rposition(|k| k.meta.activates_at <= now)
    }

    /// The state of each key at `now`. `max_jwt_lifetime` bounds how long a token
    /// signed by a retired key may still be presented.
    pub fn states(&self, now: i64, max_jwt_lifetime: i64) -> Vec<(&LoadedKey, KeyState)> {
        let active = self.active_index(now);
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let state = match active {
                    _ if k.meta.activates_at > now => KeyState::Pending,
                    Some(a) if a == i => KeyState::Active,
                    _ => {
                        // Retired when its successor took over.
                        let retired_at = self
                            .keys
                            .get(i + 1)
                            .map(|n| n.meta.activates_at)
                            .unwrap_or(now);
                        if now >= retired_at + max_jwt_lifetime {
                            KeyState::Expired
                        } else {
                            KeyState::Retired
                        }
                    }
                };
                (k, state)
            })
            .collect()
    }

    pub fn signing_key(&self, now: i64) -> Option<&LoadedKey> {
        self.active_index(now).and_then(|i| self.keys.get(i))
    }

    /// A key that may verify a token deputy signed: any key still published.
    pub fn verifying_key(&self, kid: &str, now: i64, max_jwt_lifetime: i64) -> Option<&LoadedKey> {
        self.states(now, max_jwt_lifetime)
            .into_iter()
            .find(|(k, s)| k.meta.kid == kid && s.is_published())
            .map(|(k, _)| k)
    }

    /// RFC 7517 §5 JWK Set of every published key (public members only).
    pub fn jwks(&self, now: i64, max_jwt_lifetime: i64) -> Value {
        let keys: Vec<&Value> = self
            .states(now, max_jwt_lifetime)
            .into_iter()
            .filter(|(_, s)| s.is_published())
            .map(|(k, _)| &k.jwk)
            .collect();
        json!({ "keys": keys })
    }

    fn kids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.keys.iter().map(|k| k.meta.kid.clone()).collect();
        v.sort();
        v
    }
}

/// Where the keys live: a directory (SQLite deployments), or the database
/// with the private keys sealed (PostgreSQL: every instance shares them).
pub enum KeySource {
    Dir(PathBuf),
    Database {
        store: crate::store::postgres::PgStore,
        kek: sealed::Kek,
    },
}

impl KeySource {
    fn load(&self) -> Result<Vec<file::StoredKey>, String> {
        match self {
            KeySource::Dir(dir) => file::load_all(dir),
            KeySource::Database { store, kek } => store
                .read_blocking(|db| db::load_all(db, kek))
                .map_err(|e| e.to_string()),
        }
    }

    fn kids(&self) -> Result<Vec<String>, String> {
        match self {
            KeySource::Dir(dir) => {
                let mut kids: Vec<String> = file::load_all(dir)?
                    .into_iter()
                    .map(|k| k.meta.kid)
                    .collect();
                kids.sort();
                Ok(kids)
            }
            KeySource::Database { store, .. } => {
                store.read_blocking(db::kids).map_err(|e| e.to_string())
            }
        }
    }

    /// Create the first key if there is none (exactly one, even when
    /// several instances start at once on an empty database).
    fn ensure_first(&self, now: i64) -> Result<(), String> {
        match self {
            KeySource::Dir(dir) => {
                if file::load_all(dir)?.is_empty() {
                    file::generate(dir, now, now)?;
                }
                Ok(())
            }
            KeySource::Database { store, kek } => store
                .transact_blocking(|db| db::ensure_first(db, kek, now).map(Ok::<bool, ()>))
                .map_err(|e| e.to_string())
                .map(|_| ()),
        }
    }
}

/// The server's live view of its keys, reloaded when keys are added.
pub struct Keys {
    source: KeySource,
    ring: RwLock<Arc<KeyRing>>,
}

impl Keys {
    /// Load the keys in `dir`; on first start generate one that signs at once.
    pub fn open(dir: &Path, now: i64) -> Result<Keys, String> {
        Self::open_source(KeySource::Dir(dir.to_path_buf()), now)
    }

    /// Load the keys from `source`; on first start generate one that signs at once.
    pub fn open_source(source: KeySource, now: i64) -> Result<Keys, String> {
        source.ensure_first(now)?;
        let stored = source.load()?;
        Ok(Keys {
            source,
            ring: RwLock::new(Arc::new(KeyRing::build(stored)?)),
        })
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Pick up keys added by `deputy keys rotate` (another process, perhaps
    /// on another machine).
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        if self.source.kids()? == self.ring().kids() {
            return Ok(false);
        }
        let ring = Arc::new(KeyRing::build(self.source.load()?)?);
        match self.ring.write() {
            Ok(mut g) => *g = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        std::env::temp_dir().join(format!("deputy-ring-{}", crate::secret::random_token(6)))
    }

    #[test]
    fn rotation_prepublishes_then_retires_then_expires() {
        let d = dir();
        let keys = Keys::open(&d, 1000).unwrap();
        let first = keys.ring().signing_key(1000).unwrap().meta.kid.clone();
        // Rotate at t=2000 with the new key activating at t=2600.
        let second = file::generate(&d, 2000, 2600).unwrap().kid;
        assert!(keys.reload_if_changed().unwrap());
        let ring = keys.ring();
        let max = 330;
        assert_eq!(
            ring.signing_key(2100).unwrap().meta.kid,
            first,
            "pending key must not sign"
        );
        let jwks = ring.jwks(2100, max);
        assert_eq!(
            jwks["keys"].as_array().unwrap().len(),
            2,
            "pending key is published"
        );
        assert_eq!(ring.signing_key(2600).unwrap().meta.kid, second);
        // The retired key stays published while tokens it signed may live.
        assert!(ring.verifying_key(&first, 2600 + max - 1, max).is_some());
        assert!(ring.verifying_key(&first, 2600 + max, max).is_none());
        let states: Vec<KeyState> = ring
            .states(2600 + max, max)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(states, vec![KeyState::Expired, KeyState::Active]);
        assert!(ring.jwks(2100, max)["keys"][0].get("d").is_none());
    }
}
