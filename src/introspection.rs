//! Token introspection (RFC 7662) and its JWT response (RFC 9701).
//!
//! The token must be an access token deputy signed, and the store has the last
//! word: the record must exist, be an access token, be neither revoked nor
//! expired, and be visible to the caller. Every store read is fresh, so a
//! revocation shows at once. Anything else is the same `{"active": false}`,
//! never a reason (RFC 7662 §2.2).

use crate::store::Db;
use serde_json::{json, Map, Value};

use crate::error::OAuthError;
use crate::keys::KeyRing;
use crate::store::resources::ids_for_client;
use crate::store::tokens::TokenRecord;
use crate::store::Store;
use crate::store::StoreError;
use crate::token::gate::{NotLive, OwnTokens};

/// RFC 9701 §5: `typ` of the signed introspection response.
pub const JWT_RESPONSE_TYP: &str = "token-introspection+jwt";
/// RFC 9701 §4 and §5: the media type a caller asks for in `Accept`, and that
/// the signed response is sent as.
pub const JWT_RESPONSE_MEDIA_TYPE: &str = "application/token-introspection+jwt";

/// RFC 7662 §2.2: the whole answer for any token that is not active for the
/// caller, with nothing that says why.
pub fn inactive() -> Value {
    json!({ "active": false })
}

/// RFC 7662 §4: a caller may learn about a token only when it is the client
/// the token was issued to, or the token is addressed to it (the audience is
/// its client id, or a resource registered as that client).
fn visible_to(conn: &dyn Db, record: &TokenRecord, caller: &str) -> Result<bool, StoreError> {
    Ok(record.client_id == caller
        || record.audience == caller
        || ids_for_client(conn, caller)?.contains(&record.audience))
}

/// The introspection answer for `token`, as `caller_id` may see it.
pub async fn introspect(
    own: &OwnTokens,
    store: &Store,
    now: i64,
    caller_id: &str,
    token: &str,
) -> Result<Value, OAuthError> {
    // Only live access tokens deputy signed (RFC 9068 `at+jwt`): garbage,
    // another issuer, a bad signature, an ID token, an expired or revoked
    // token end here. RFC 7662 §2.2: active = issued by us, not revoked, not
    // expired (and, §4, for this caller). The record, not the JWT, decides.
    let caller = caller_id.to_string();
    let live = own
        .live_access_token_and(store, now, token, move |c, record| {
            visible_to(c, record, &caller)
        })
        .await?;
    let record = match live {
        Ok((live, true)) => live.record,
        Ok((live, false)) => {
            tracing::info!(client_id = %caller_id, jti = %live.record.jti, active = false, "token introspected");
            return Ok(inactive());
        }
        Err(NotLive::Invalid(reason)) => {
            tracing::debug!(client_id = %caller_id, reason = ?reason, "introspected token not a JWT of ours");
            return introspect_refresh(store, own.issuer(), now, caller_id, token).await;
        }
        Err(_) => return Ok(inactive()),
    };
    tracing::info!(client_id = %caller_id, jti = %record.jti, active = true, "token introspected");
    active_response(&record, own.issuer())
}

/// Refresh tokens are opaque; only the client they were issued to may
/// introspect them (RFC 7662 §4).
async fn introspect_refresh(
    store: &Store,
    issuer: &str,
    now: i64,
    caller_id: &str,
    token: &str,
) -> Result<Value, OAuthError> {
    if token.len() > 512 || token.contains('.') {
        return Ok(inactive());
    }
    let hash = crate::secret::sha256_b64(token.as_bytes());
    let found = store
        .read(move |c| {
            let Some(rec) = crate::store::refresh::get(c, &hash)? else {
                return Ok(None);
            };
            let live = crate::store::liveness::family_live(c, &rec)?;
            Ok(Some((rec, live)))
        })
        .await?;
    let Some((rec, live)) = found else {
        return Ok(inactive());
    };
    let active = live && rec.client_id == caller_id && rec.is_usable(now);
    if !active {
        return Ok(inactive());
    }
    let mut answer = json!({
        "active": true,
        "scope": rec.scope,
        "client_id": rec.client_id,
        "sub": rec.user_id,
        "iss": issuer,
        "exp": rec.idle_expires_at.min(rec.absolute_expires_at),
        "iat": rec.issued_at,
        "jti": rec.jti,
        "token_type": "refresh_token",
    });
    // deputy's `task`: a family issued for one task (CIBA) says which, as
    // the access tokens refreshed from it do.
    if let (Some(task), Some(m)) = (rec.task, answer.as_object_mut()) {
        m.insert("task".into(), json!(task));
    }
    Ok(answer)
}

/// RFC 7662 §2.2 members for an active token (plus RFC 8693 §4.1 `act`,
/// §4.4 `may_act` and deputy's `task`).
fn active_response(record: &TokenRecord, issuer: &str) -> Result<Value, OAuthError> {
    let mut m = Map::new();
    m.insert("active".into(), json!(true));
    if !record.scope.is_empty() {
        m.insert("scope".into(), json!(record.scope));
    }
    m.insert("client_id".into(), json!(record.client_id));
    // RFC 9449 §6.2: a bound token's type and key, so a resource server that
    // introspects can check the proof.
    m.insert(
        "token_type".into(),
        json!(if record.cnf_jkt.is_some() {
            "DPoP"
        } else {
            "Bearer"
        }),
    );
    if let Some(jkt) = &record.cnf_jkt {
        m.insert("cnf".into(), json!({ "jkt": jkt }));
    }
    m.insert("exp".into(), json!(record.expires_at));
    m.insert("iat".into(), json!(record.issued_at));
    m.insert("sub".into(), json!(record.subject));
    m.insert("aud".into(), json!(record.audience));
    m.insert("iss".into(), json!(issuer));
    m.insert("jti".into(), json!(record.jti));
    if let Some(chain) = &record.actor_chain {
        // The chain was written by us as JSON; if it no longer parses the
        // store is damaged, which is a 5xx, not an answer.
        let act: Value = serde_json::from_str(chain).map_err(StoreError::from)?;
        m.insert("act".into(), act);
    }
    if let Some(task) = &record.task {
        m.insert("task".into(), json!(task));
    }
    if let Some(next) = &record.may_act {
        // RFC 8693 §4.4: introspection may convey who is allowed to act next.
        m.insert("may_act".into(), json!({ "sub": next }));
    }
    Ok(Value::Object(m))
}

/// RFC 9701 §5: the answer as a JWT signed with deputy's active key, for the
/// caller (`aud`). It carries no `sub` or `exp` of its own, so it cannot pass
/// for an access token.
pub fn signed_response(
    ring: &KeyRing,
    issuer: &str,
    now: i64,
    caller_id: &str,
    answer: &Value,
) -> Result<String, OAuthError> {
    let claims = json!({
        "iss": issuer,
        "aud": caller_id,
        "iat": now,
        "token_introspection": answer,
    });
    crate::token::sign(ring, now, JWT_RESPONSE_TYP, &claims)
}
