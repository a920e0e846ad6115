//! The authorization code grant (RFC 6749 §4.1) with PKCE (RFC 7636):
//! issuing a code at the end of the authorization interaction, and redeeming
//! it at the token endpoint.

pub mod request;

use crate::audit::{AuditEvent, Mode};
use crate::client_auth::{AuthenticatedClient, RequestJob};
use crate::error::OAuthError;
use crate::grant::GrantContext;
use crate::model::GrantType;
use crate::policy::pkce;
use crate::secret::{random_token, sha256_b64};
use crate::store::codes::CodeRecord;
use crate::store::liveness::{lapsed, still_live, Dependencies, Lapsed};
use crate::store::tokens::GrantRecord;
use crate::store::Db;
use crate::store::Outcome;
use crate::token::person_claims::id_token_claims;
use crate::token::TokenResponse;

use super::person::{mint, refresh_record, store, PersonTokenSpec};
use request::AuthorizationRequest;

/// Who is signed in when the code is issued.
pub struct SignedIn<'a> {
    /// The session's id hash (the row, not the cookie value).
    pub session_hash: &'a str,
    pub user_id: &'a str,
    pub auth_time: i64,
    pub amr: &'a str,
}

/// Issue a code for a consented request. One transaction records the grant
/// (what the tokens will hang from), the hashed code and the audit event.
pub async fn issue_code(
    ctx: &GrantContext<'_>,
    req: &AuthorizationRequest,
    who: SignedIn<'_>,
) -> Result<String, OAuthError> {
    let now = ctx.now;
    let code = random_token(32);
    let grant = GrantRecord {
        id: random_token(16),
        grant_type: GrantType::AuthorizationCode.as_str().to_string(),
        subject: who.user_id.to_string(),
        client_id: req.client_id.clone(),
        scope: req.scope.join(" "),
        auth_time: Some(who.auth_time),
        created_at: now,
    };
    let record = CodeRecord {
        code_hash: sha256_b64(code.as_bytes()),
        client_id: req.client_id.clone(),
        user_id: who.user_id.to_string(),
        grant_id: grant.id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        redirect_uri_sent: req.redirect_uri_sent,
        code_challenge: req.code_challenge.clone(),
        scope: req.scope.join(" "),
        nonce: req.nonce.clone(),
        resource: req.resource.clone(),
        auth_time: who.auth_time,
        amr: who.amr.to_string(),
        issued_at: now,
        expires_at: now + ctx.settings.code_ttl,
        consumed_at: None,
        sid: Some(crate::login::session_sid(who.session_hash)),
        requested_claims: (!req.claims.id_token.is_empty())
            .then(|| serde_json::to_string(&req.claims.id_token))
            .transpose()
            .map_err(OAuthError::server_error)?,
        dpop_jkt: req.dpop_jkt.clone(),
    };
    let mut event = AuditEvent::new(now, "code_issued", Mode::Person).person(Some(who.user_id));
    event.client_id = Some(req.client_id.clone());
    event.scope = Some(record.scope.clone());
    event.audience = Some(record.resource.clone());
    event.detail = Some(serde_json::json!({"grant_id": grant.id}).to_string());
    let deps = Dependencies {
        client_id: req.client_id.clone(),
        person: Some(who.user_id.to_string()),
        ..Dependencies::default()
    };
    let session_hash = who.session_hash.to_string();
    let scope = req.scope.clone();
    ctx.store
        .transact(move |c| {
            // Decided on reader threads before; a logout, a consent withdrawn,
            // a person disabled or a client removed since then must not
            // leave a new grant that their cascade never saw.
            if let Some(refusal) = issuance_refused(c, &deps, &session_hash, &scope, &record)? {
                let mut refused = AuditEvent::new(now, "code_refused", Mode::Person)
                    .person(Some(&record.user_id))
                    .refused(&refusal.description);
                refused.client_id = Some(record.client_id.clone());
                refused.scope = Some(record.scope.clone());
                refused.audience = Some(record.resource.clone());
                crate::store::audit::insert(c, &refused)?;
                return Ok(Outcome::Refuse(refusal));
            }
            crate::store::tokens::insert_grant(c, &grant)?;
            crate::store::codes::insert(c, &record)?;
            crate::store::audit::insert(c, &event)?;
            Ok(Outcome::Commit(()))
        })
        .await??;
    Ok(code)
}

/// Why a code may no longer be issued, checked in the issuing transaction.
fn issuance_refused(
    c: &dyn Db,
    deps: &Dependencies,
    session_hash: &str,
    scope: &[String],
    record: &CodeRecord,
) -> crate::store::StoreResult<Option<OAuthError>> {
    use crate::error::ErrorCode;
    use crate::store::sessions;
    match lapsed(c, deps)? {
        None => {}
        // Never redirect to a client that is no longer registered
        // (RFC 6749 §4.1.2.1): the caller shows a page for this one.
        Some(Lapsed::Client) => return Ok(Some(OAuthError::invalid_client())),
        Some(_) => {
            return Ok(Some(OAuthError::new(
                ErrorCode::AccessDenied,
                "the person's account is disabled",
            )))
        }
    }
    if sessions::get_session(c, session_hash)?.is_none() {
        return Ok(Some(OAuthError::new(
            ErrorCode::LoginRequired,
            "the person signed out",
        )));
    }
    let consented = crate::store::consents::covers(
        c,
        &record.user_id,
        &record.client_id,
        &record.resource,
        scope,
    )?;
    if !consented {
        return Ok(Some(OAuthError::new(
            ErrorCode::ConsentRequired,
            "consent was withdrawn",
        )));
    }
    Ok(None)
}

/// A parsed token request for this grant.
pub struct CodeRedemption {
    pub code: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    /// RFC 8707 §2.2: the resource the access token is for.
    pub resource: Option<String>,
}

fn bad_code() -> OAuthError {
    OAuthError::invalid_grant("the authorization code is invalid, expired or already used")
}

/// RFC 6749 §4.1.2: a code used twice is an attack signal; every token issued
/// from it is revoked. Committed even though the request fails.
fn revoke_replayed(conn: &dyn Db, rec: &CodeRecord, now: i64) -> crate::store::StoreResult<()> {
    let n = crate::store::refresh::revoke_family(
        conn,
        &rec.grant_id,
        now,
        "authorization code replayed",
    )?
    .tokens;
    let mut e = AuditEvent::new(now, "code_replayed", Mode::System)
        .person(Some(&rec.user_id))
        .refused("authorization code presented twice");
    e.client_id = Some(rec.client_id.clone());
    e.detail = Some(serde_json::json!({"grant_id": rec.grant_id, "tokens_revoked": n}).to_string());
    crate::store::audit::insert(conn, &e)
}

/// RFC 6749 §4.1.3: the checks of a presentation by the code's own client.
/// A presentation that fails them still spends the code (it is presented
/// once, RFC 6749 §4.1.2), so they are decided before the transaction and
/// the transaction records the refusal.
fn presentation_refused(
    rec: &CodeRecord,
    req: &CodeRedemption,
    proof_jkt: Option<&str>,
) -> Option<OAuthError> {
    // RFC 6749 §4.1.3: redirect_uri must be identical when it was sent with the
    // authorization request; when sent here anyway, it must still match.
    match &req.redirect_uri {
        Some(r) if *r != rec.redirect_uri => {
            return Some(OAuthError::invalid_grant("redirect_uri does not match"))
        }
        None if rec.redirect_uri_sent => {
            return Some(OAuthError::invalid_request(
                "missing parameter: redirect_uri",
            ))
        }
        _ => {}
    }
    // RFC 7636 §4.6: the verifier must match the challenge bound to the code.
    if !pkce::verify(req.code_verifier.as_deref(), &rec.code_challenge) {
        return Some(OAuthError::invalid_grant("PKCE verification failed"));
    }
    // RFC 9449 §10.1: a code bound with dpop_jkt needs a proof of that key.
    if let Some(bound) = &rec.dpop_jkt {
        if proof_jkt != Some(bound.as_str()) {
            return Some(OAuthError::invalid_grant(
                "the code is bound to another DPoP key",
            ));
        }
    }
    None
}

/// Spend a code whose presentation failed its checks, and say why in the trail.
fn refuse_presentation(
    c: &dyn Db,
    rec: &CodeRecord,
    code_hash: &str,
    refusal: OAuthError,
    client: &crate::store::clients::Client,
    now: i64,
) -> crate::store::StoreResult<Outcome<TokenResponse, OAuthError>> {
    if !crate::store::codes::consume(c, code_hash, now)? {
        revoke_replayed(c, rec, now)?;
        return Ok(Outcome::Refuse(bad_code()));
    }
    let mut e = AuditEvent::new(now, "code_refused", super::person::mode_for(client))
        .client(&client.id, client.kind.as_str())
        .person(Some(&rec.user_id))
        .refused(&refusal.description);
    e.scope = Some(rec.scope.clone());
    e.audience = Some(rec.resource.clone());
    e.detail = Some(serde_json::json!({"grant_id": rec.grant_id, "code_spent": true}).to_string());
    crate::store::audit::insert(c, &e)?;
    Ok(Outcome::Refuse(refusal))
}

/// RFC 6749 §4.1.3: redeem a code for tokens. The returned job consumes the
/// code and records the tokens in the request's transaction.
pub async fn redeem(
    ctx: &GrantContext<'_>,
    auth: &AuthenticatedClient,
    req: CodeRedemption,
) -> Result<RequestJob<TokenResponse>, OAuthError> {
    let now = ctx.now;
    let code_hash = sha256_b64(req.code.as_bytes());
    let rec = {
        let h = code_hash.clone();
        ctx.store
            .read(move |c| crate::store::codes::get(c, &h))
            .await?
    }
    .ok_or_else(bad_code)?;
    // RFC 6749 §4.1.3: the code was issued to this client. Another client's
    // presentation does not spend it: that client is not its owner.
    if rec.client_id != auth.client.id {
        return Err(bad_code());
    }
    if rec.consumed_at.is_some() {
        return Ok(Box::new(move |c| {
            revoke_replayed(c, &rec, now)?;
            Ok(Outcome::Refuse(bad_code()))
        }));
    }
    if now >= rec.expires_at {
        return Err(bad_code());
    }
    // RFC 8707 §2.2: the person consented for the resource bound to the code;
    // a token for another one is refused, not silently issued for the first.
    // (Not a failed presentation: the code stays usable for its resource.)
    if req.resource.as_ref().is_some_and(|r| *r != rec.resource) {
        return Err(OAuthError::invalid_target(
            "the code was not issued for this resource",
        ));
    }
    let client = auth.client.clone();
    let proof_jkt = ctx.cnf_jkt();
    if let Some(refusal) = presentation_refused(&rec, &req, proof_jkt.as_deref()) {
        return Ok(Box::new(move |c| {
            refuse_presentation(c, &rec, &code_hash, refusal.clone(), &client, now)
        }));
    }
    let user = {
        let id = rec.user_id.clone();
        ctx.store
            .read(move |c| crate::store::users::by_id(c, &id))
            .await?
    };
    let Some(user) = user.filter(|u| u.disabled_at.is_none()) else {
        return Err(bad_code());
    };
    // A stored list deputy wrote itself; unreadable means none.
    let requested: Vec<String> = rec
        .requested_claims
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let scope: Vec<String> = rec
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let refresh = client.may_use(GrantType::RefreshToken).then(|| {
        let plaintext = random_token(32);
        let mut r = refresh_record(
            &plaintext,
            &rec.grant_id,
            &client.id,
            &rec.user_id,
            &rec.scope,
            &rec.resource,
            rec.auth_time,
            &rec.amr,
            now,
            ctx.settings.refresh_idle_ttl,
            now + ctx.settings.refresh_absolute_ttl,
        );
        r.sid = rec.sid.clone();
        // RFC 9449 §5: a public client's refresh tokens are bound to its
        // DPoP key (a confidential client's are bound by its authentication).
        if auth.method == crate::model::AuthMethod::None {
            r.dpop_jkt = proof_jkt.clone();
        }
        (plaintext, r)
    });
    let scope_names: Vec<&str> = scope.iter().map(String::as_str).collect();
    let id_token_claims = id_token_claims(&user, &scope_names, client.id_token_claims, &requested);
    let set = mint(
        &ctx.ring,
        ctx.settings,
        now,
        PersonTokenSpec {
            client: &client,
            user_id: &rec.user_id,
            id_token_claims,
            scope,
            resource: &rec.resource,
            auth_time: rec.auth_time,
            amr: &rec.amr,
            nonce: rec.nonce.as_deref(),
            sid: rec.sid.as_deref(),
            grant_id: &rec.grant_id,
            grant_type: GrantType::AuthorizationCode,
            refresh,
            cnf_jkt: proof_jkt.clone(),
        },
    )?;
    let deps = Dependencies {
        client_id: client.id.clone(),
        person: Some(rec.user_id.clone()),
        grant_id: Some(rec.grant_id.clone()),
        ..Dependencies::default()
    };
    let mut redeemed = AuditEvent::new(now, "code_redeemed", super::person::mode_for(&client))
        .client(&client.id, client.kind.as_str())
        .person(Some(&rec.user_id));
    redeemed.scope = Some(rec.scope.clone());
    redeemed.audience = Some(rec.resource.clone());
    redeemed.detail = Some(serde_json::json!({"grant_id": rec.grant_id}).to_string());
    Ok(Box::new(move |c| {
        // One atomic statement decides the race: the loser is a replay.
        if !crate::store::codes::consume(c, &code_hash, now)? {
            revoke_replayed(c, &rec, now)?;
            return Ok(Outcome::Refuse(bad_code()));
        }
        // A grant revoked since the code was issued (consent withdrawn,
        // an administrator's revocation), a person disabled or a client
        // removed meanwhile: the code is spent and yields nothing.
        if !still_live(c, &deps)? {
            return Ok(Outcome::Refuse(bad_code()));
        }
        store(c, &set)?;
        crate::store::audit::insert(c, &redeemed)?;
        Ok(Outcome::Commit(set.response.clone()))
    }))
}
