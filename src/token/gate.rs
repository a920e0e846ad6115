//! The one gate for deputy's own tokens. Every place that accepts an access
//! token deputy issued — the admin API, `/userinfo`, token exchange (subject
//! and actor tokens), introspection — asks `live_access_token`: the JWT is
//! ours (ES256, a published key, our issuer, `typ` at+jwt, unexpired,
//! RFC 9068 §4, RFC 8725 §3.1) and the store's record says it is an access
//! token that is neither revoked nor expired. The record has the last word
//! and is read fresh, so a revocation shows at once. Revocation, which must
//! reach expired tokens too, asks `known_access_token`.

use std::sync::Arc;

use crate::store::Db;
use serde_json::{Map, Value};

use quick_cache::sync::Cache;

use super::verify::{
    verify_id_token_hint, verify_own_jwt_ignoring_exp, verify_signed, OwnTokenError, VerifiedJwt,
};
use super::ACCESS_TOKEN_TYP;
use crate::keys::Keys;
use crate::model::TokenKind;
use crate::store::tokens::TokenRecord;
use crate::store::{Store, StoreResult};

/// What verifies deputy's own JWTs: built once, shared by every caller.
#[derive(Clone)]
pub struct OwnTokens {
    keys: Arc<Keys>,
    issuer: String,
    /// How long a token signed by a retired key may still be presented.
    max_lifetime: i64,
    /// Access tokens whose signature verified: SHA-256 of the token → the
    /// key id and claims. A resource server introspects, and an agent
    /// exchanges, the same token many times; a hit skips only the ES256
    /// check (the same bytes verify the same way), while the key must still
    /// be published and the token unexpired on every use, and the store's
    /// record is read as before. Per instance, bounded, never an answer.
    verified: Arc<Cache<[u8; 32], VerifiedAccess>>,
}

/// A verified access token: the key id that verified it, and its claims.
type VerifiedAccess = Arc<(String, VerifiedJwt)>;

/// Verified access tokens remembered (a few MiB at most).
const VERIFIED_KEPT: usize = 10_000;

/// Why a presented token is not a live access token of ours. Each caller
/// maps it to what its endpoint speaks (`invalid_token`, `invalid_request`,
/// `{"active": false}`) and says no more than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLive {
    /// Not a valid JWT of ours at all (malformed, other issuer or key, bad
    /// signature, wrong type, expired).
    Invalid(OwnTokenError),
    /// Ours, but without a `jti`, or with one the store does not know.
    Unknown,
    /// Recorded, but not an access token.
    NotAccess,
    /// Revoked, or expired by the record.
    Inactive,
}

/// An access token that passed the gate: its verified claims and its record.
#[derive(Debug, Clone)]
pub struct LiveAccessToken {
    pub claims: Map<String, Value>,
    pub record: TokenRecord,
}

impl OwnTokens {
    pub fn new(keys: Arc<Keys>, issuer: &str, max_lifetime: i64) -> Self {
        OwnTokens {
            keys,
            issuer: issuer.to_string(),
            max_lifetime,
            verified: Arc::new(Cache::new(VERIFIED_KEPT)),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// An access token of ours, unexpired (signature and claims only).
    fn verify_access(&self, now: i64, token: &str) -> Result<VerifiedJwt, OwnTokenError> {
        let digest = crate::secret::sha256(token.as_bytes());
        let ring = self.keys.ring();
        let (kid, verified) = match self.verified.get(&digest) {
            Some(hit) => hit.as_ref().clone(),
            None => {
                let fresh = verify_signed(
                    &ring,
                    &self.issuer,
                    now,
                    self.max_lifetime,
                    token,
                    Some(ACCESS_TOKEN_TYP),
                )?;
                self.verified.insert(digest, Arc::new(fresh.clone()));
                fresh
            }
        };
        // RFC 7517: only a key still published verifies (a retired key's
        // tokens stop with it), checked on every use.
        if ring.verifying_key(&kid, now, self.max_lifetime).is_none() {
            return Err(OwnTokenError::UnknownKey);
        }
        match verified.exp() {
            Some(exp) if now < exp => Ok(verified),
            _ => Err(OwnTokenError::Expired),
        }
    }

    /// RFC 7009 §2.1: the `jti` of an access token of ours, expired or not
    /// (an expired token may have live descendants its revocation must
    /// reach). Never a credential check.
    pub fn known_access_token(&self, now: i64, token: &str) -> Option<String> {
        verify_own_jwt_ignoring_exp(
            &self.keys.ring(),
            &self.issuer,
            now,
            self.max_lifetime,
            token,
            Some(ACCESS_TOKEN_TYP),
        )
        .ok()
        .and_then(|v| v.jti().map(str::to_string))
    }

    /// OIDC Core §3.1.2.1, RP-Initiated Logout §2: an ID token of ours as a
    /// hint (it may have expired: a hint identifies, it does not authenticate).
    pub fn id_token_hint(&self, now: i64, token: &str) -> Result<VerifiedJwt, OwnTokenError> {
        verify_id_token_hint(&self.keys.ring(), &self.issuer, now, token)
    }

    /// Is `token` a live access token of ours? The record is read fresh.
    pub async fn live_access_token(
        &self,
        store: &Store,
        now: i64,
        token: &str,
    ) -> StoreResult<Result<LiveAccessToken, NotLive>> {
        Ok(self
            .live_access_token_and(store, now, token, |_, _| Ok(()))
            .await?
            .map(|(live, ())| live))
    }

    /// `live_access_token`, and `also` on the live record in the same read
    /// (e.g. who may see it), so a caller's decision needs one store trip.
    pub async fn live_access_token_and<X, F>(
        &self,
        store: &Store,
        now: i64,
        token: &str,
        also: F,
    ) -> StoreResult<Result<(LiveAccessToken, X), NotLive>>
    where
        F: FnOnce(&dyn Db, &TokenRecord) -> StoreResult<X> + Send + 'static,
        X: Send + 'static,
    {
        let verified = match self.verify_access(now, token) {
            Ok(v) => v,
            Err(why) => return Ok(Err(NotLive::Invalid(why))),
        };
        let Some(jti) = verified.jti().map(str::to_string) else {
            return Ok(Err(NotLive::Unknown));
        };
        let found = store
            .read(move |c| {
                let Some(record) = crate::store::tokens::get(c, &jti)? else {
                    return Ok(Err(NotLive::Unknown));
                };
                if record.kind != TokenKind::Access {
                    return Ok(Err(NotLive::NotAccess));
                }
                if !record.is_active(now) {
                    return Ok(Err(NotLive::Inactive));
                }
                let extra = also(c, &record)?;
                Ok(Ok((record, extra)))
            })
            .await?;
        Ok(found.map(|(record, extra)| {
            (
                LiveAccessToken {
                    claims: verified.claims,
                    record,
                },
                extra,
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(now: i64) -> (Arc<Keys>, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("deputy-gate-{}", crate::secret::random_token(6)));
        (Arc::new(Keys::open(&dir, now).unwrap()), dir)
    }

    fn token(keys: &Keys, now: i64, exp: i64) -> String {
        let claims = serde_json::json!({"iss": "https://as", "jti": "j1", "exp": exp, "sub": "s"});
        super::super::sign(&keys.ring(), now, ACCESS_TOKEN_TYP, &claims).unwrap()
    }

    /// The remembered signature check never outlives the key or the token.
    #[test]
    fn a_remembered_verification_still_checks_key_and_expiry() {
        let (keys, dir) = keys(1000);
        let gate = OwnTokens::new(keys.clone(), "https://as", 100);
        let t = token(&keys, 1000, 5000);
        assert_eq!(gate.verify_access(1000, &t).unwrap().jti(), Some("j1"));
        assert_eq!(gate.verified.len(), 1);
        // Remembered: the same answer again, expiry checked each time.
        assert_eq!(gate.verify_access(1001, &t).unwrap().jti(), Some("j1"));
        assert_eq!(
            gate.verify_access(5000, &t).unwrap_err(),
            OwnTokenError::Expired
        );
        // Another signature over the same claims is checked on its own.
        let mut forged = t.clone();
        forged.truncate(t.len() - 4);
        forged.push_str("AAAA");
        assert_eq!(
            gate.verify_access(1001, &forged).unwrap_err(),
            OwnTokenError::BadSignature
        );
        // A rotation retires the key; once it is no longer published, a
        // remembered token signed by it is refused too.
        crate::keys::file::generate(&dir, 1010, 1020).unwrap();
        assert!(keys.reload_if_changed().unwrap());
        assert!(
            gate.verify_access(1100, &t).is_ok(),
            "retired but published"
        );
        assert_eq!(
            gate.verify_access(4000, &t).unwrap_err(),
            OwnTokenError::UnknownKey
        );
    }
}
