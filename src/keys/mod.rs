//! deputy's signing keys and the JWKS.
//!
//! Key life cycle (see `KeyState`): a rotated key is *pending* — published in the
//! JWKS but not yet signing — for `key_prepublish` seconds, so relying parties'
//! JWKS caches (max-age `jwks_max_age`) hold it before the first token it signs
//! arrives. Then it is *active*. The key it replaced is *retired*: still
//! published until every token it signed has expired, then *expired* and gone
//! from the JWKS.
//!
//! Keys come in generations: each P-256 key (ES256, everything deputy signs)
//! has an RSA key (RS256, ID tokens of clients that ask for it, OIDC Core
//! §15.1) created with it, which is in whatever state its P-256 key is.

pub mod db;
pub mod file;
mod ring;
pub mod rsa;
pub mod sealed;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use file::{Generation, KeyMeta};
pub use ring::{KeyRing, KeyState, LoadedKey};

/// The order keys take over in: activation time, then creation order.
pub(crate) fn signing_order(a: &KeyMeta, b: &KeyMeta) -> std::cmp::Ordering {
    (a.activates_at, a.serial, &a.kid).cmp(&(b.activates_at, b.serial, &b.kid))
}

/// The P-256 keys that sign at `now` or will (active, pending) and have no
/// RSA key yet: keys from before RSA keys existed. Retired keys need none
/// (nothing RS256 was signed in their time).
pub fn lacking_rsa<'a>(metas: &[&'a KeyMeta], now: i64) -> Vec<&'a KeyMeta> {
    let mut ec: Vec<&KeyMeta> = metas.iter().copied().filter(|m| !m.is_rsa()).collect();
    ec.sort_by(|a, b| signing_order(a, b));
    let from = ec.iter().rposition(|m| m.activates_at <= now).unwrap_or(0);
    ec.into_iter()
        .skip(from)
        .filter(|m| {
            !metas
                .iter()
                .any(|r| r.is_rsa() && r.ec_kid.as_deref() == Some(m.kid.as_str()))
        })
        .collect()
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

    /// Create the first key generation if there is none (exactly one, even
    /// when several instances start at once on an empty database), and an
    /// RSA key for each signing or pending P-256 key without one, so a
    /// deployment from before RSA keys gets them at its next start.
    fn ensure(&self, now: i64) -> Result<(), String> {
        match self {
            KeySource::Dir(dir) => file::ensure(dir, now).map(|_| ()),
            KeySource::Database { store, kek } => {
                let (needed, in_use) = store
                    .read_blocking(|db| db::rsa_keys_needed(db, now))
                    .map_err(|e| e.to_string())?;
                if needed == 0 {
                    return Ok(());
                }
                // Generated outside the transaction (up to a second each),
                // so it stays short; one run again after a conflict reuses them.
                let mut spare: Vec<String> = Vec::with_capacity(needed);
                for _ in 0..needed {
                    let mut avoid = in_use.clone();
                    for pem in &spare {
                        avoid.push(rsa::inspect(pem)?.0);
                    }
                    spare.push(rsa::new_private_pem(&avoid)?);
                }
                store
                    .transact_blocking(|db| {
                        db::ensure(db, kek, now, &mut spare.clone()).map(Ok::<bool, ()>)
                    })
                    .map_err(|e| e.to_string())
                    .map(|_| ())
            }
        }
    }
}

/// The server's live view of its keys, reloaded when keys are added.
pub struct Keys {
    source: KeySource,
    ring: RwLock<Arc<KeyRing>>,
}

impl Keys {
    /// Load the keys in `dir`; on first start generate a generation that
    /// signs at once.
    pub fn open(dir: &Path, now: i64) -> Result<Keys, String> {
        Self::open_source(KeySource::Dir(dir.to_path_buf()), now)
    }

    /// Load the keys from `source`; on first start generate a generation
    /// that signs at once (see `KeySource::ensure`).
    pub fn open_source(source: KeySource, now: i64) -> Result<Keys, String> {
        source.ensure(now)?;
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
        let first_rsa = keys.ring().rsa_signing_key(1000).unwrap().meta.kid.clone();
        // Rotate at t=2000 with the new generation activating at t=2600.
        let second = file::generate(&d, 2000, 2600).unwrap();
        assert!(keys.reload_if_changed().unwrap());
        assert!(!keys.reload_if_changed().unwrap(), "nothing new");
        let ring = keys.ring();
        let max = 330;
        assert_eq!(
            ring.signing_key(2100).unwrap().meta.kid,
            first,
            "pending key must not sign"
        );
        assert_eq!(ring.rsa_signing_key(2100).unwrap().meta.kid, first_rsa);
        let jwks = ring.jwks(2100, max);
        assert_eq!(
            jwks["keys"].as_array().unwrap().len(),
            4,
            "pending keys are published"
        );
        assert_eq!(ring.signing_key(2600).unwrap().meta.kid, second.ec.kid);
        assert_eq!(ring.rsa_signing_key(2600).unwrap().meta.kid, second.rsa.kid);
        // The retired keys stay published while tokens they signed may live.
        for kid in [&first, &first_rsa] {
            assert!(ring.verifying_key(kid, 2600 + max - 1, max).is_some());
            assert!(ring.verifying_key(kid, 2600 + max, max).is_none());
        }
        let states: Vec<(String, KeyState)> = ring
            .states(2600 + max, max)
            .into_iter()
            .map(|(k, s)| (k.meta.kid.clone(), s))
            .collect();
        assert_eq!(
            states,
            vec![
                (first, KeyState::Expired),
                (first_rsa, KeyState::Expired),
                (second.ec.kid, KeyState::Active),
                (second.rsa.kid, KeyState::Active),
            ]
        );
        assert!(ring.jwks(2100, max)["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| ["d", "p", "q", "dp", "dq", "qi"]
                .iter()
                .all(|m| k.get(m).is_none())));
    }

    #[test]
    fn the_jwks_publishes_each_generation_as_an_ec_and_an_rsa_key() {
        let d = dir();
        let keys = Keys::open(&d, 1000).unwrap();
        let ring = keys.ring();
        let jwks = ring.jwks(1000, 330);
        let list = jwks["keys"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        let ec = list.iter().find(|k| k["kty"] == "EC").unwrap();
        assert_eq!(ec["alg"], "ES256");
        assert_eq!(ec["crv"], "P-256");
        assert_eq!(
            ec["kid"],
            file::ec_thumbprint(ec["x"].as_str().unwrap(), ec["y"].as_str().unwrap())
        );
        let rsa = list.iter().find(|k| k["kty"] == "RSA").unwrap();
        let members: std::collections::BTreeSet<&str> = rsa
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            members,
            ["alg", "e", "kid", "kty", "n", "use"].into_iter().collect()
        );
        assert_eq!(rsa["alg"], "RS256");
        assert_eq!(rsa["use"], "sig");
        assert_eq!(rsa["e"], "AQAB");
        // RFC 7638 §3.2 over {"e","kty","n"}, computed here independently.
        let canonical = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            rsa["e"].as_str().unwrap(),
            rsa["n"].as_str().unwrap()
        );
        use base64::Engine;
        let want = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(openssl::sha::sha256(canonical.as_bytes()));
        assert_eq!(rsa["kid"], want);
        assert_eq!(
            ring.rsa_signing_key(1000).unwrap().meta.kid,
            rsa["kid"].as_str().unwrap()
        );
    }

    #[test]
    fn an_rsa_key_without_its_ec_key_is_neither_published_nor_used() {
        let d = dir();
        let keys = Keys::open(&d, 1000).unwrap();
        // A rotation that stopped after the RSA key: its P-256 key is absent.
        let ghost = file::new_key(1500, 1500).unwrap();
        let in_use = keys.ring().kids();
        let orphan =
            file::new_rsa_key(1500, &ghost.meta, rsa::new_private_pem(&in_use).unwrap()).unwrap();
        std::fs::write(
            d.join(format!("{}.pem", orphan.meta.kid)),
            &orphan.private_pem,
        )
        .unwrap();
        std::fs::write(
            d.join(format!("{}.json", orphan.meta.kid)),
            serde_json::to_vec(&orphan.meta).unwrap(),
        )
        .unwrap();
        assert!(keys.reload_if_changed().unwrap());
        assert!(!keys.reload_if_changed().unwrap());
        let ring = keys.ring();
        assert_eq!(ring.jwks(2000, 330)["keys"].as_array().unwrap().len(), 2);
        assert!(ring.verifying_key(&orphan.meta.kid, 2000, 330).is_none());
        assert_ne!(
            ring.rsa_signing_key(2000).unwrap().meta.kid,
            orphan.meta.kid
        );
    }

    #[test]
    fn an_ec_only_directory_gets_an_rsa_key_for_its_signing_and_pending_keys() {
        let dir = dir();
        // A deployment from before RSA keys: three P-256 keys, one retired,
        // one active, one pending.
        std::fs::create_dir_all(&dir).unwrap();
        let mut ec = Vec::new();
        for at in [100, 200, 900] {
            let k = file::new_key(at - 50, at).unwrap();
            file::write_key(&dir, &k).unwrap();
            ec.push(k.meta);
        }
        let added = file::ensure(&dir, 500).unwrap();
        let linked: Vec<&str> = added.iter().filter_map(|m| m.ec_kid.as_deref()).collect();
        assert_eq!(linked, vec![ec[1].kid.as_str(), ec[2].kid.as_str()]);
        assert_eq!(added[0].activates_at, 200);
        assert_eq!(added[1].activates_at, 900);
        assert_eq!(file::load_all(&dir).unwrap().len(), 5);
        // The next start adds nothing; no kid changed.
        assert!(file::ensure(&dir, 600).unwrap().is_empty());
        let kids: Vec<String> = file::load_all(&dir)
            .unwrap()
            .into_iter()
            .map(|k| k.meta.kid)
            .collect();
        assert!(ec.iter().all(|m| kids.contains(&m.kid)));
    }
}
