//! The token set issued for a person (authorization code and refresh grants):
//! an access token, an ID token when `openid` was granted, and a refresh token
//! when the client may refresh.

use crate::audit::{AuditEvent, Mode};
use crate::config::Settings;
use crate::error::OAuthError;
use crate::keys::KeyRing;
use crate::model::{GrantType, SubjectKind, TokenKind};
use crate::store::clients::Client;
use crate::store::refresh::RefreshRecord;
use crate::store::tokens::TokenRecord;
use crate::store::Db;
use crate::token::id_token::{mint_id_token, IdTokenSpec};
use crate::token::{mint_access_token, new_jti, AccessTokenSpec, TokenResponse};

pub struct PersonTokenSpec<'a> {
    pub client: &'a Client,
    pub user_id: &'a str,
    /// The person's claims for the ID token beyond the protocol claims
    /// (`token::person_claims::id_token_claims`).
    pub id_token_claims: serde_json::Map<String, serde_json::Value>,
    /// Scope of this access token (may be narrower than the family's).
    pub scope: Vec<String>,
    pub resource: &'a str,
    pub auth_time: i64,
    pub amr: &'a str,
    pub nonce: Option<&'a str>,
    /// The login session, for the ID token's `sid`.
    pub sid: Option<&'a str>,
    pub grant_id: &'a str,
    pub grant_type: GrantType,
    /// What the access token is for (deputy's `task` claim), if said.
    pub task: Option<&'a str>,
    /// The refresh token to hand out with its record, if any.
    pub refresh: Option<(String, RefreshRecord)>,
    /// RFC 9449 §5: the DPoP key the access token is bound to, if any.
    pub cnf_jkt: Option<String>,
}

/// Everything to store, and the response to send once stored. Each record
/// gets its `token_issued` event when stored, so the trail names exactly the
/// tokens that were issued.
#[derive(Clone)]
pub struct IssuedSet {
    pub response: TokenResponse,
    pub records: Vec<TokenRecord>,
    pub refresh: Option<RefreshRecord>,
}

/// A person's own client acts for them as `person`; an agent client's use of
/// the person's grant is `delegated`.
pub fn mode_for(client: &Client) -> Mode {
    mode_for_kind(client.kind.as_str())
}

fn mode_for_kind(client_kind: &str) -> Mode {
    if client_kind == crate::model::ClientKind::Agent.as_str() {
        Mode::Delegated
    } else {
        Mode::Person
    }
}

/// The `token_issued` event of a person's token.
pub fn issued_event(rec: &TokenRecord) -> AuditEvent {
    let mut e = AuditEvent::new(
        rec.issued_at,
        "token_issued",
        mode_for_kind(&rec.client_kind),
    )
    .client(&rec.client_id, &rec.client_kind)
    .person(Some(&rec.subject));
    e.jti = Some(rec.jti.clone());
    e.audience = Some(rec.audience.clone());
    e.scope = Some(rec.scope.clone());
    e.parent_jti = rec.parent_jti.clone();
    e.detail = Some(
        serde_json::json!({"grant_type": rec.grant_type, "kind": rec.kind.as_str(), "grant_id": rec.grant_id})
            .to_string(),
    );
    e
}

pub fn mint(
    ring: &KeyRing,
    settings: &Settings,
    now: i64,
    spec: PersonTokenSpec<'_>,
) -> Result<IssuedSet, OAuthError> {
    let client = spec.client;
    let access = mint_access_token(
        ring,
        &settings.issuer,
        now,
        client,
        AccessTokenSpec {
            subject: spec.user_id.to_string(),
            subject_kind: SubjectKind::Person,
            audience: spec.resource.to_string(),
            scope: spec.scope.clone(),
            expires_at: now + settings.access_token_ttl,
            auth_time: Some(spec.auth_time),
            act: None,
            task: spec.task.map(str::to_string),
            parent_jti: None,
            grant_id: Some(spec.grant_id.to_string()),
            grant_type: spec.grant_type,
            rule_id: None,
            may_act: None,
            actor_token_jti: None,
            cnf_jkt: spec.cnf_jkt.clone(),
        },
    )?;
    let mut records = vec![access.record.clone()];
    let mut response = TokenResponse {
        access_token: access.jwt.clone(),
        expires_in: settings.access_token_ttl,
        scope: access.record.scope.clone(),
        dpop: spec.cnf_jkt.is_some(),
        ..Default::default()
    };
    if spec.scope.iter().any(|s| s == "openid") {
        let (jwt, rec) = mint_id_token(
            ring,
            &settings.issuer,
            now,
            IdTokenSpec {
                client_id: &client.id,
                client_kind: client.kind.as_str(),
                subject: spec.user_id,
                auth_time: spec.auth_time,
                nonce: spec.nonce,
                sid: spec.sid,
                amr: spec.amr,
                access_token: &access.jwt,
                scope: &access.record.scope,
                expires_at: now + settings.id_token_ttl,
                grant_id: Some(spec.grant_id),
                grant_type: spec.grant_type.as_str(),
                person_claims: spec.id_token_claims,
                alg: client.id_token_alg,
            },
        )?;
        records.push(rec);
        response.id_token = Some(jwt);
    }
    let mut refresh_out = None;
    if let Some((plaintext, rec)) = spec.refresh {
        let token_rec = TokenRecord {
            jti: rec.jti.clone(),
            kind: TokenKind::Refresh,
            subject: spec.user_id.to_string(),
            subject_kind: SubjectKind::Person,
            client_id: client.id.clone(),
            client_kind: client.kind.as_str().to_string(),
            actor_chain: None,
            audience: settings.issuer.clone(),
            scope: rec.scope.clone(),
            task: None,
            issued_at: now,
            expires_at: rec.idle_expires_at,
            parent_jti: None,
            grant_id: Some(spec.grant_id.to_string()),
            grant_type: spec.grant_type.as_str().to_string(),
            rule_id: None,
            may_act: None,
            actor_token_jti: None,
            revoked_at: None,
            revoked_reason: None,
            cnf_jkt: None,
        };
        records.push(token_rec);
        response.refresh_token = Some(plaintext);
        refresh_out = Some(rec);
    }
    Ok(IssuedSet {
        response,
        records,
        refresh: refresh_out,
    })
}

/// A refresh record for a new token of the family.
#[allow(clippy::too_many_arguments)]
pub fn refresh_record(
    plaintext: &str,
    family_id: &str,
    client_id: &str,
    user_id: &str,
    family_scope: &str,
    resource: &str,
    auth_time: i64,
    amr: &str,
    now: i64,
    idle_ttl: i64,
    absolute_expires_at: i64,
) -> RefreshRecord {
    RefreshRecord {
        token_hash: crate::secret::sha256_b64(plaintext.as_bytes()),
        jti: new_jti(),
        family_id: family_id.to_string(),
        client_id: client_id.to_string(),
        user_id: user_id.to_string(),
        scope: family_scope.to_string(),
        resource: resource.to_string(),
        auth_time,
        amr: amr.to_string(),
        issued_at: now,
        // A rotated token never outlives the family (RFC 9700 §4.14.2).
        idle_expires_at: (now + idle_ttl).min(absolute_expires_at),
        absolute_expires_at,
        consumed_at: None,
        consumed_by: None,
        successor_hash: None,
        revoked_at: None,
        sid: None,
        dpop_jkt: None,
        task: None,
    }
}

/// Store an issued set inside the caller's transaction, with one
/// `token_issued` event per token.
pub fn store(conn: &dyn Db, set: &IssuedSet) -> crate::store::StoreResult<()> {
    for r in &set.records {
        crate::store::tokens::insert(conn, r)?;
    }
    if let Some(r) = &set.refresh {
        crate::store::refresh::insert(conn, r)?;
    }
    // The whole set is issued for one task (CIBA), which only the access
    // token carries as a claim; the trail names it on every token's event.
    let task = set.records.iter().find_map(|r| r.task.clone());
    for r in &set.records {
        let mut e = issued_event(r);
        e.task = task.clone();
        crate::store::audit::insert(conn, &e)?;
    }
    Ok(())
}
