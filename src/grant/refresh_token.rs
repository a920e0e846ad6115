//! The refresh token grant (RFC 6749 §6) with rotation and reuse detection
//! (RFC 9700 §4.14.2).
//!
//! Every successful refresh consumes the presented token and issues its
//! successor in the same family, in one transaction. Presenting a consumed
//! token is reuse: the whole family and everything issued from it is revoked.
//!
//! Grace window (setting `refresh_grace`, default 5 s, 0 = strict): a retry by
//! the same client with the token it just rotated, within the window, while the
//! successor has not been used yet, receives the same successor again (it is
//! derived from the presented token with a server key, so it is never stored in
//! clear) and a fresh access token. Anything else is reuse.

use crate::store::Db;

use crate::audit::{AuditEvent, Mode};
use crate::client_auth::{AuthenticatedClient, RequestJob};
use crate::error::OAuthError;
use crate::grant::GrantContext;
use crate::model::GrantType;
use crate::policy::{is_subset, parse_scope};
use crate::secret::sha256_b64;
use crate::store::refresh::RefreshRecord;
use crate::store::{Outcome, StoreResult};
use crate::token::TokenResponse;

use super::person::{mint, refresh_record, store, PersonTokenSpec};

/// A refresh request (RFC 6749 §6), as sent.
pub struct RefreshRequest {
    pub refresh_token: String,
    pub scope: Option<String>,
    /// RFC 8707 §2.2: the resource the new access token is for.
    pub resource: Option<String>,
}

fn bad_token() -> OAuthError {
    OAuthError::invalid_grant("the refresh token is invalid, expired or revoked")
}

/// The successor of a refresh token: HMAC-SHA256 under a server key.
fn successor_of(key: &str, presented: &str) -> StoreResult<String> {
    crate::secret::hmac_b64(key, "deputy refresh successor", presented.as_bytes())
        .map_err(crate::store::StoreError::Corrupt)
}

/// Revoke a family and everything issued from it; audit the reuse.
fn revoke_for_reuse(
    conn: &dyn Db,
    rec: &RefreshRecord,
    presenter: &str,
    now: i64,
) -> StoreResult<()> {
    let n = crate::store::refresh::revoke_family(conn, &rec.family_id, now, "refresh token reuse")?
        .tokens;
    let mut e = AuditEvent::new(now, "refresh_reuse_detected", Mode::System)
        .person(Some(&rec.user_id))
        .refused("a consumed refresh token was presented again");
    e.client_id = Some(rec.client_id.clone());
    e.jti = Some(rec.jti.clone());
    e.detail = Some(
        serde_json::json!({"family_id": rec.family_id, "presented_by": presenter, "tokens_revoked": n})
            .to_string(),
    );
    crate::metrics::refresh_reuse();
    crate::store::audit::insert(conn, &e)
}

/// The server key successors are derived with, loaded (or created) once.
async fn refresh_key(ctx: &GrantContext<'_>) -> Result<String, OAuthError> {
    if let Some(k) = ctx.refresh_key.get() {
        return Ok(k.clone());
    }
    let k = ctx
        .store
        .write(|c| crate::store::refresh::server_secret(c, "refresh-successor"))
        .await?;
    Ok(ctx.refresh_key.get_or_init(|| k).clone())
}

/// RFC 6749 §6. The token set is signed before the write, on this request's
/// thread; the returned job re-reads the token and decides everything that
/// can change (consumed, revoked, expired, disabled) in the request's
/// transaction.
pub async fn refresh(
    ctx: &GrantContext<'_>,
    auth: &AuthenticatedClient,
    req: RefreshRequest,
) -> Result<RequestJob<TokenResponse>, OAuthError> {
    if req.refresh_token.len() > 512 {
        return Err(bad_token());
    }
    let requested_scope = req.scope.as_deref().map(parse_scope).transpose()?;
    let now = ctx.now;
    let settings = ctx.settings;
    let grace = settings.refresh_grace;
    let client = auth.client.clone();
    let hash = sha256_b64(req.refresh_token.as_bytes());
    let pre = {
        let h = hash.clone();
        ctx.store
            .read(move |c| crate::store::refresh::get(c, &h))
            .await?
    };
    let Some(pre) = pre else {
        return Err(bad_token());
    };
    // RFC 9449 §5: a family bound to a DPoP key is refreshed only with a
    // proof of that key. Decided before anything else, so a copied token
    // without the key changes nothing (not even reuse detection).
    let proof_jkt = ctx.cnf_jkt();
    if let Some(bound) = &pre.dpop_jkt {
        if proof_jkt.as_deref() != Some(bound.as_str()) {
            return Err(OAuthError::invalid_grant(
                "the refresh token is bound to another DPoP key",
            ));
        }
    }
    let key = refresh_key(ctx).await?;
    let successor = successor_of(&key, &req.refresh_token)?;
    let successor_hash = sha256_b64(successor.as_bytes());
    // RFC 6749 §6: the scope may only narrow; the family keeps its consent.
    // Decided inside the write, after reuse detection.
    let family_scope: Vec<String> = pre
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let scope = match &requested_scope {
        Some(s) if !is_subset(s, &family_scope) => Err(OAuthError::invalid_scope(
            "requested scope exceeds the original grant",
        )),
        Some(s) => Ok(s.clone()),
        None => Ok(family_scope),
    };
    // RFC 8707 §2.2: the family was consented for one resource; a refresh
    // asking for another is refused, not silently answered for the old one.
    let scope = scope.and_then(|s| match &req.resource {
        Some(r) if *r != pre.resource => Err(OAuthError::invalid_target(
            "the refresh token was not granted for this resource",
        )),
        _ => Ok(s),
    });
    // OIDC Core §12.2: a refreshed ID token; it carries the person's claims
    // only for a client registered for them (a `claims` request was for the
    // first ID token). Read as the person is now.
    let wants_claims = client.id_token_claims
        && scope
            .as_ref()
            .is_ok_and(|s| s.iter().any(|n| n == "openid"));
    let person = if wants_claims {
        let id = pre.user_id.clone();
        ctx.store
            .read(move |c| crate::store::users::by_id(c, &id))
            .await?
    } else {
        None
    };
    let set = match scope {
        Ok(scope) => {
            let scope_names: Vec<&str> = scope.iter().map(String::as_str).collect();
            let id_token_claims = person
                .as_ref()
                .map(|u| crate::token::person_claims::id_token_claims(u, &scope_names, true, &[]))
                .unwrap_or_default();
            let mut successor_rec = refresh_record(
                &successor,
                &pre.family_id,
                &client.id,
                &pre.user_id,
                &pre.scope,
                &pre.resource,
                pre.auth_time,
                &pre.amr,
                now,
                settings.refresh_idle_ttl,
                pre.absolute_expires_at,
            );
            // The family stays tied to the login session it started in,
            // and to the DPoP key it was bound to.
            successor_rec.sid = pre.sid.clone();
            successor_rec.dpop_jkt = pre.dpop_jkt.clone();
            // A family issued for a task (CIBA) stays that task's.
            successor_rec.task = pre.task.clone();
            Ok(mint(
                &ctx.ring,
                settings,
                now,
                PersonTokenSpec {
                    client: &client,
                    user_id: &pre.user_id,
                    id_token_claims,
                    scope,
                    resource: &pre.resource,
                    auth_time: pre.auth_time,
                    amr: &pre.amr,
                    nonce: None,
                    sid: pre.sid.as_deref(),
                    grant_id: &pre.family_id,
                    grant_type: GrantType::RefreshToken,
                    task: pre.task.as_deref(),
                    refresh: Some((successor, successor_rec)),
                    cnf_jkt: proof_jkt.clone(),
                },
            )?)
        }
        Err(e) => Err(e),
    };
    Ok(Box::new(move |c| {
        let Some(rec) = crate::store::refresh::get(c, &hash)? else {
            return Ok(Outcome::Refuse(bad_token()));
        };
        if rec.revoked_at.is_some() {
            return Ok(Outcome::Refuse(bad_token()));
        }
        let retry = if let Some(consumed_at) = rec.consumed_at {
            let successor_rec = crate::store::refresh::get(c, &successor_hash)?;
            let successor_unused = successor_rec
                .as_ref()
                .is_some_and(|s| s.consumed_at.is_none() && s.revoked_at.is_none());
            // Whole seconds: "< grace" keeps the window at most `grace`
            // seconds long, and `refresh_grace = 0` strict.
            let in_grace = now - consumed_at < grace
                && rec.client_id == client.id
                && rec.consumed_by.as_deref() == Some(client.id.as_str())
                && rec.successor_hash.as_deref() == Some(successor_hash.as_str())
                && successor_unused;
            if !in_grace {
                revoke_for_reuse(c, &rec, &client.id, now)?;
                return Ok(Outcome::Refuse(bad_token()));
            }
            true
        } else {
            false
        };
        // RFC 6749 §6: the token must have been issued to the authenticated
        // client. (A consumed token from another client was handled above as reuse.)
        if rec.client_id != client.id {
            return Ok(Outcome::Refuse(bad_token()));
        }
        if now >= rec.idle_expires_at || now >= rec.absolute_expires_at {
            return Ok(Outcome::Refuse(bad_token()));
        }
        if !crate::store::liveness::family_live(c, &rec)? {
            return Ok(Outcome::Refuse(bad_token()));
        }
        // Refusals decided before the write count only after reuse detection.
        let set = match &set {
            Ok(set) => set.clone(),
            Err(e) => return Ok(Outcome::Refuse(e.clone())),
        };
        // An agent refreshing a person's grant acts for them (delegated).
        let mode = super::person::mode_for(&client);
        if retry {
            // Same successor again: its record exists and is not issued
            // again; store only the new access/ID tokens, and say so.
            let mut again = set;
            again.refresh = None;
            again
                .records
                .retain(|r| r.kind != crate::model::TokenKind::Refresh);
            store(c, &again)?;
            let mut e = AuditEvent::new(now, "refresh_retried", mode)
                .client(&client.id, client.kind.as_str())
                .person(Some(&rec.user_id));
            e.jti = Some(rec.jti.clone());
            e.detail = Some(
                serde_json::json!({
                    "family_id": rec.family_id,
                    "issued": again.records.iter().map(|r| r.jti.as_str()).collect::<Vec<_>>(),
                    "refresh_token_issued": false,
                })
                .to_string(),
            );
            crate::store::audit::insert(c, &e)?;
            return Ok(Outcome::Commit(again.response));
        }
        // One atomic statement decides a race: the loser sees the token consumed.
        if !crate::store::refresh::consume(c, &hash, now, &client.id, &successor_hash)? {
            return Ok(Outcome::Refuse(bad_token()));
        }
        store(c, &set)?;
        let mut e = AuditEvent::new(now, "refresh_rotated", mode)
            .client(&client.id, client.kind.as_str())
            .person(Some(&rec.user_id));
        e.jti = Some(rec.jti.clone());
        e.detail = Some(serde_json::json!({"family_id": rec.family_id}).to_string());
        crate::store::audit::insert(c, &e)?;
        Ok(Outcome::Commit(set.response))
    }))
}
