//! ID tokens (OpenID Connect Core §2, §3.1.3.6).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::{new_jti, sign_id_token};
use crate::error::OAuthError;
use crate::keys::KeyRing;
use crate::model::{IdTokenAlg, SubjectKind, TokenKind};
use crate::store::tokens::TokenRecord;

/// OIDC Core §3.1.3.6: base64url of the left half of SHA-256 of the access token.
pub fn at_hash(access_token: &str) -> String {
    let digest = crate::secret::sha256(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or(&digest))
}

pub struct IdTokenSpec<'a> {
    pub client_id: &'a str,
    pub client_kind: &'a str,
    pub subject: &'a str,
    pub auth_time: i64,
    pub nonce: Option<&'a str>,
    /// The login session (OIDC Front-Channel Logout 1.0 §3 `sid`).
    pub sid: Option<&'a str>,
    pub amr: &'a str,
    pub access_token: &'a str,
    pub scope: &'a str,
    pub expires_at: i64,
    pub grant_id: Option<&'a str>,
    pub grant_type: &'a str,
    /// Profile/email claims released into this ID token (OIDC Core §5.4, §5.5).
    pub person_claims: Map<String, Value>,
    /// The client's registered `id_token_signed_response_alg`.
    pub alg: IdTokenAlg,
}

pub fn mint_id_token(
    ring: &KeyRing,
    issuer: &str,
    now: i64,
    spec: IdTokenSpec<'_>,
) -> Result<(String, TokenRecord), OAuthError> {
    let jti = new_jti();
    let mut c = Map::new();
    c.insert("iss".into(), json!(issuer));
    c.insert("sub".into(), json!(spec.subject));
    c.insert("aud".into(), json!(spec.client_id));
    c.insert("azp".into(), json!(spec.client_id));
    c.insert("exp".into(), json!(spec.expires_at));
    c.insert("iat".into(), json!(now));
    c.insert("auth_time".into(), json!(spec.auth_time));
    c.insert("jti".into(), json!(jti));
    c.insert("at_hash".into(), json!(at_hash(spec.access_token)));
    let amr: Vec<&str> = spec.amr.split(' ').filter(|s| !s.is_empty()).collect();
    c.insert("amr".into(), json!(amr));
    if let Some(n) = spec.nonce {
        c.insert("nonce".into(), json!(n));
    }
    if let Some(sid) = spec.sid {
        c.insert("sid".into(), json!(sid));
    }
    // Never over a protocol claim: person_claims holds only standard
    // claims of §5.1, none of which is set above.
    for (name, value) in spec.person_claims {
        c.entry(name).or_insert(value);
    }
    let jwt = sign_id_token(ring, now, spec.alg, &Value::Object(c))?;
    let record = TokenRecord {
        jti,
        kind: TokenKind::Id,
        subject: spec.subject.to_string(),
        subject_kind: SubjectKind::Person,
        client_id: spec.client_id.to_string(),
        client_kind: spec.client_kind.to_string(),
        actor_chain: None,
        audience: spec.client_id.to_string(),
        scope: spec.scope.to_string(),
        task: None,
        issued_at: now,
        expires_at: spec.expires_at,
        parent_jti: None,
        grant_id: spec.grant_id.map(str::to_string),
        grant_type: spec.grant_type.to_string(),
        rule_id: None,
        may_act: None,
        actor_token_jti: None,
        revoked_at: None,
        revoked_reason: None,
        cnf_jkt: None,
    };
    Ok((jwt, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_oidc_example() {
        // OIDC Core Appendix A.3 example access token and at_hash (for RS256/SHA-256).
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
