//! Token minting, claims and signing, in one place. Every access token is an
//! RFC 9068 JWT (`typ: at+jwt`) signed ES256 with the active key (ID tokens
//! RS256 when their client registered it), and every
//! token is recorded (`TokenRecord`) in the same transaction that answers the
//! request.

pub mod gate;
pub mod id_token;
pub mod jws;
pub mod person_claims;
pub mod verify;

use serde_json::{json, Map, Value};

use crate::error::OAuthError;
use crate::keys::KeyRing;
use crate::model::{GrantType, IdTokenAlg, SubjectKind, TokenKind};
use crate::secret::Redacted;
use crate::store::clients::Client;
use crate::store::tokens::TokenRecord;

/// RFC 9068 §2.1 media type, in its short form for `typ`.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// What an access token says, before it is signed.
#[derive(Debug, Clone)]
pub struct AccessTokenSpec {
    pub subject: String,
    pub subject_kind: SubjectKind,
    pub audience: String,
    pub scope: Vec<String>,
    pub expires_at: i64,
    pub auth_time: Option<i64>,
    /// RFC 8693 §4.1 `act` claim, for delegation tokens.
    pub act: Option<Value>,
    pub task: Option<String>,
    pub parent_jti: Option<String>,
    pub grant_id: Option<String>,
    pub grant_type: GrantType,
    pub rule_id: Option<String>,
    /// RFC 8693 §4.4 `may_act`: the only client that may exchange the token next.
    pub may_act: Option<String>,
    /// RFC 8693 §2.1: the actor token presented with the subject token, if any.
    pub actor_token_jti: Option<String>,
    /// RFC 9449 §6.1: the thumbprint of the DPoP key the token is bound to.
    pub cnf_jkt: Option<String>,
}

/// A signed token and the record to store for it.
#[derive(Clone)]
pub struct MintedToken {
    pub jwt: String,
    pub record: TokenRecord,
}

impl std::fmt::Debug for MintedToken {
    /// The token is a bearer credential: its length only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken")
            .field("jwt", &Redacted(&self.jwt))
            .field("record", &self.record)
            .finish()
    }
}

/// Whether token ids are all random (set once at start-up, by the engine).
static RANDOM_JTI: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lay token ids out for the store engine. SQLite (the default): a time
/// prefix keeps the inserts of one group commit in neighbouring B-tree
/// pages. PostgreSQL: SERIALIZABLE transactions lock whole B-tree leaf
/// pages they read, so ids that all land on the newest page make a
/// transaction that reads a recent token conflict with every one inserting
/// (measured: 19 refreshes in 100 run again); random ids spread them.
pub fn use_random_jti(random: bool) {
    RANDOM_JTI.store(random, std::sync::atomic::Ordering::Relaxed);
}

/// A token id: 18 bytes, base64url; 6 bytes of milliseconds then 12 random
/// bytes, or all random (`use_random_jti`). At least 96 random bits keep
/// ids unique (a jti is an identifier, not a secret).
pub fn new_jti() -> String {
    use base64::Engine;
    let mut bytes = crate::secret::random_bytes::<18>();
    if !RANDOM_JTI.load(std::sync::atomic::Ordering::Relaxed) {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if let Some(prefix) = bytes.get_mut(..6) {
            prefix.copy_from_slice(&millis.to_be_bytes()[2..]);
        }
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Sign a JWT ES256 with the active P-256 key, with the given `typ`: every
/// token deputy signs except an RS256 client's ID tokens (`sign_id_token`).
pub fn sign(ring: &KeyRing, now: i64, typ: &str, claims: &Value) -> Result<String, OAuthError> {
    let key = ring
        .signing_key(now)
        .ok_or_else(|| OAuthError::server_error("no active signing key"))?;
    let header = json!({ "alg": "ES256", "typ": typ, "kid": key.meta.kid });
    jws::encode(&header, claims, key.signer.as_ref()).map_err(OAuthError::server_error)
}

/// Sign an ID token with the algorithm its client registered (OIDC Core
/// §15.1: an OP must be able to sign RS256; §3.1.3.7 step 7: the client
/// validates with the `id_token_signed_response_alg` it registered). The
/// only way RS256 is signed: access tokens, logout tokens and introspection
/// responses use `sign` (ES256).
pub fn sign_id_token(
    ring: &KeyRing,
    now: i64,
    alg: IdTokenAlg,
    claims: &Value,
) -> Result<String, OAuthError> {
    match alg {
        IdTokenAlg::Es256 => sign(ring, now, "JWT", claims),
        IdTokenAlg::Rs256 => {
            // Created with the active P-256 key (start-up and rotation
            // create both); none means that key was made by an older
            // deputy: the next start or rotation adds it.
            let key = ring
                .rsa_signing_key(now)
                .ok_or_else(|| OAuthError::server_error("no active RSA signing key"))?;
            let header = json!({ "alg": "RS256", "typ": "JWT", "kid": key.meta.kid });
            jws::encode(&header, claims, key.signer.as_ref()).map_err(OAuthError::server_error)
        }
    }
}

/// Build, sign and describe an access token (RFC 9068 §2.2).
pub fn mint_access_token(
    ring: &KeyRing,
    issuer: &str,
    now: i64,
    client: &Client,
    spec: AccessTokenSpec,
) -> Result<MintedToken, OAuthError> {
    let jti = new_jti();
    let scope = spec.scope.join(" ");
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(issuer));
    claims.insert("sub".into(), json!(spec.subject));
    claims.insert("aud".into(), json!(spec.audience));
    claims.insert("exp".into(), json!(spec.expires_at));
    claims.insert("iat".into(), json!(now));
    claims.insert("jti".into(), json!(jti));
    claims.insert("client_id".into(), json!(client.id));
    if !scope.is_empty() {
        claims.insert("scope".into(), json!(scope));
    }
    if let Some(t) = spec.auth_time {
        claims.insert("auth_time".into(), json!(t));
    }
    if let Some(act) = &spec.act {
        claims.insert("act".into(), act.clone());
    }
    if let Some(task) = &spec.task {
        claims.insert("task".into(), json!(task));
    }
    if let Some(next) = &spec.may_act {
        claims.insert("may_act".into(), json!({ "sub": next }));
    }
    if let Some(jkt) = &spec.cnf_jkt {
        claims.insert("cnf".into(), json!({ "jkt": jkt }));
    }
    let claims = Value::Object(claims);
    let jwt = sign(ring, now, ACCESS_TOKEN_TYP, &claims)?;
    let record = TokenRecord {
        jti,
        kind: TokenKind::Access,
        subject: spec.subject,
        subject_kind: spec.subject_kind,
        client_id: client.id.clone(),
        client_kind: client.kind.as_str().to_string(),
        actor_chain: spec.act.map(|a| a.to_string()),
        audience: spec.audience,
        scope,
        task: spec.task,
        issued_at: now,
        expires_at: spec.expires_at,
        parent_jti: spec.parent_jti,
        grant_id: spec.grant_id,
        grant_type: spec.grant_type.as_str().to_string(),
        rule_id: spec.rule_id,
        may_act: spec.may_act,
        actor_token_jti: spec.actor_token_jti,
        revoked_at: None,
        revoked_reason: None,
        cnf_jkt: spec.cnf_jkt,
    };
    Ok(MintedToken { jwt, record })
}

/// The JSON body of a successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Clone, Default)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub issued_token_type: Option<&'static str>,
    /// The access token is DPoP-bound: `token_type` DPoP (RFC 9449 §5).
    pub dpop: bool,
}

impl std::fmt::Debug for TokenResponse {
    /// The tokens are bearer credentials: their lengths only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &Redacted(&self.access_token))
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field(
                "refresh_token",
                &self.refresh_token.as_deref().map(Redacted),
            )
            .field("id_token", &self.id_token.as_deref().map(Redacted))
            .field("issued_token_type", &self.issued_token_type)
            .field("dpop", &self.dpop)
            .finish()
    }
}

impl TokenResponse {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("access_token".into(), json!(self.access_token));
        m.insert(
            "token_type".into(),
            json!(if self.dpop { "DPoP" } else { "Bearer" }),
        );
        m.insert("expires_in".into(), json!(self.expires_in));
        if !self.scope.is_empty() {
            m.insert("scope".into(), json!(self.scope));
        }
        if let Some(r) = &self.refresh_token {
            m.insert("refresh_token".into(), json!(r));
        }
        if let Some(i) = &self.id_token {
            m.insert("id_token".into(), json!(i));
        }
        if let Some(t) = self.issued_token_type {
            m.insert("issued_token_type".into(), json!(t));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCESS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz";

    #[test]
    fn token_response_debug_never_shows_a_token() {
        let r = TokenResponse {
            access_token: ACCESS.to_string(),
            expires_in: 300,
            scope: "read".to_string(),
            refresh_token: Some("refresh-secret-value-0123456789".to_string()),
            id_token: Some("eyJpZC10b2tlbi1oZWFkZXI.cGF5bG9hZA.c2ln".to_string()),
            issued_token_type: None,
            dpop: false,
        };
        let shown = format!("{r:?}");
        for secret in [
            ACCESS,
            "eyJhbGci",
            "refresh-secret-value",
            "eyJpZC10b2tlbi1oZWFkZXI",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("expires_in: 300") && shown.contains("redacted"));
    }

    #[test]
    fn minted_token_debug_never_shows_the_jwt() {
        let m = MintedToken {
            jwt: ACCESS.to_string(),
            record: TokenRecord {
                jti: "jti-1".into(),
                kind: TokenKind::Access,
                subject: "alice".into(),
                subject_kind: SubjectKind::Person,
                client_id: "app".into(),
                client_kind: "app".into(),
                actor_chain: None,
                audience: "https://api.example".into(),
                scope: "read".into(),
                task: None,
                issued_at: 1,
                expires_at: 2,
                parent_jti: None,
                grant_id: None,
                grant_type: "client_credentials".into(),
                rule_id: None,
                may_act: None,
                actor_token_jti: None,
                revoked_at: None,
                revoked_reason: None,
                cnf_jkt: None,
            },
        };
        let shown = format!("{m:?}");
        assert!(!shown.contains("eyJhbGci"), "{shown}");
        assert!(shown.contains("jti-1"), "the record is shown: {shown}");
    }
}
