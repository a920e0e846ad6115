//! The key ring: the keys loaded, their states at a moment, which key signs
//! and which verifies, and the JWKS.

use josekit::jws::{JwsSigner, JwsVerifier, ES256, RS256};
use serde_json::{json, Value};

use super::{file, signing_order, KeyMeta};

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
    pub signer: Box<dyn JwsSigner>,
    pub verifier: Box<dyn JwsVerifier>,
    pub jwk: Value,
    /// `jwk` as JSON text, made once: /jwks joins these per request instead
    /// of building and serialising the set again (an RSA key is ~0.5 KB).
    jwk_text: String,
}

impl LoadedKey {
    fn load(k: file::StoredKey) -> Result<LoadedKey, String> {
        let fail = |e: josekit::JoseError| format!("key {}: {e}", k.meta.kid);
        let (signer, verifier, mut jwk): (Box<dyn JwsSigner>, Box<dyn JwsVerifier>, Value) =
            match &k.public {
                file::PublicParts::Ec { x, y } => (
                    Box::new(
                        ES256
                            .signer_from_pem(k.private_pem.as_bytes())
                            .map_err(fail)?,
                    ),
                    Box::new(
                        ES256
                            .verifier_from_pem(k.public_pem.as_bytes())
                            .map_err(fail)?,
                    ),
                    json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y }),
                ),
                file::PublicParts::Rsa { n, e } => (
                    Box::new(
                        RS256
                            .signer_from_pem(k.private_pem.as_bytes())
                            .map_err(fail)?,
                    ),
                    Box::new(
                        RS256
                            .verifier_from_pem(k.public_pem.as_bytes())
                            .map_err(fail)?,
                    ),
                    json!({ "kty": "RSA", "n": n, "e": e }),
                ),
            };
        if let Some(m) = jwk.as_object_mut() {
            m.insert("kid".into(), json!(k.meta.kid));
            m.insert("use".into(), json!("sig"));
            m.insert("alg".into(), json!(k.meta.alg));
        }
        let jwk_text =
            serde_json::to_string(&jwk).map_err(|e| format!("key {}: {e}", k.meta.kid))?;
        Ok(LoadedKey {
            meta: k.meta,
            signer,
            verifier,
            jwk,
            jwk_text,
        })
    }
}

/// An immutable snapshot of the keys; replaced whole when the directory changes.
pub struct KeyRing {
    /// The P-256 keys, sorted by activation time, oldest first.
    keys: Vec<LoadedKey>,
    /// The RSA key of each P-256 key's generation (same index), if any.
    rsa: Vec<Option<LoadedKey>>,
    /// Every stored kid, sorted (to see when the store changes).
    all_kids: Vec<String>,
}

impl KeyRing {
    pub(super) fn build(stored: Vec<file::StoredKey>) -> Result<KeyRing, String> {
        let mut all_kids: Vec<String> = stored.iter().map(|k| k.meta.kid.clone()).collect();
        all_kids.sort();
        let (rsa_stored, ec_stored): (Vec<_>, Vec<_>) =
            stored.into_iter().partition(|k| k.meta.is_rsa());
        let mut keys = ec_stored
            .into_iter()
            .map(LoadedKey::load)
            .collect::<Result<Vec<_>, String>>()?;
        keys.sort_by(|a, b| signing_order(&a.meta, &b.meta));
        // Each generation's RSA key; should two processes sharing a key
        // directory both have added one, every instance picks the same (the
        // first created). An RSA key whose P-256 key is absent (a rotation
        // that stopped half-way) is never used.
        let mut rsa: Vec<Option<file::StoredKey>> = keys.iter().map(|_| None).collect();
        for r in rsa_stored {
            let Some(i) = keys
                .iter()
                .position(|k| r.meta.ec_kid.as_deref() == Some(k.meta.kid.as_str()))
            else {
                continue;
            };
            if let Some(slot) = rsa.get_mut(i) {
                let better = match slot {
                    Some(cur) => (r.meta.serial, &r.meta.kid) < (cur.meta.serial, &cur.meta.kid),
                    None => true,
                };
                if better {
                    *slot = Some(r);
                }
            }
        }
        let rsa = rsa
            .into_iter()
            .map(|r| r.map(LoadedKey::load).transpose())
            .collect::<Result<Vec<_>, String>>()?;
        Ok(KeyRing {
            keys,
            rsa,
            all_kids,
        })
    }

    /// Index of the key that signs now: the latest one already activated.
    fn active_index(&self, now: i64) -> Option<usize> {
        self.keys.iter().rposition(|k| k.meta.activates_at <= now)
    }

    /// The state of each key at `now`, each RSA key right after the P-256
    /// key of its generation and in the same state. `max_jwt_lifetime`
    /// bounds how long a token signed by a retired key may still be presented.
    pub fn states(&self, now: i64, max_jwt_lifetime: i64) -> Vec<(&LoadedKey, KeyState)> {
        let active = self.active_index(now);
        self.keys
            .iter()
            .enumerate()
            .flat_map(|(i, k)| {
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
                let rsa = self.rsa.get(i).and_then(Option::as_ref);
                std::iter::once((k, state)).chain(rsa.map(|r| (r, state)))
            })
            .collect()
    }

    /// The P-256 key that signs now (ES256: every token deputy signs,
    /// unless a client asked for RS256 ID tokens).
    pub fn signing_key(&self, now: i64) -> Option<&LoadedKey> {
        self.active_index(now).and_then(|i| self.keys.get(i))
    }

    /// The RSA key that signs RS256 ID tokens now: the active generation's.
    pub fn rsa_signing_key(&self, now: i64) -> Option<&LoadedKey> {
        self.active_index(now)
            .and_then(|i| self.rsa.get(i))
            .and_then(Option::as_ref)
    }

    /// A key that may verify a token deputy signed: any key still published.
    pub fn verifying_key(&self, kid: &str, now: i64, max_jwt_lifetime: i64) -> Option<&LoadedKey> {
        self.states(now, max_jwt_lifetime)
            .into_iter()
            .find(|(k, s)| k.meta.kid == kid && s.is_published())
            .map(|(k, _)| k)
    }

    /// The JWK Set document (RFC 7517 §5) of the keys published at `now`
    /// (public members only).
    pub fn jwks_text(&self, now: i64, max_jwt_lifetime: i64) -> String {
        let keys: Vec<&str> = self
            .states(now, max_jwt_lifetime)
            .into_iter()
            .filter(|(_, s)| s.is_published())
            .map(|(k, _)| k.jwk_text.as_str())
            .collect();
        format!("{{\"keys\":[{}]}}", keys.join(","))
    }

    #[cfg(test)]
    pub fn jwks(&self, now: i64, max_jwt_lifetime: i64) -> Value {
        serde_json::from_str(&self.jwks_text(now, max_jwt_lifetime)).unwrap()
    }

    pub(super) fn kids(&self) -> Vec<String> {
        self.all_kids.clone()
    }
}
