//! Read-only admin views as JSON: token records, a token's trace (ancestors,
//! descendants, the grant it hangs from) and the audit trail. The same JSON
//! for the API and the CLI.

use crate::store::Db;
use serde_json::{json, Value};

use crate::audit::AuditEvent;
use crate::store::audit::AuditQuery;
use crate::store::lineage::{self, GrantRow, TokenFilter};
use crate::store::tokens::TokenRecord;
use crate::store::{StoreError, StoreResult};

/// Stored JSON text (an `act` chain) as JSON. deputy wrote it; if it no
/// longer parses the store is damaged, which is a 5xx, not an answer.
fn stored_json(text: Option<&str>) -> StoreResult<Value> {
    text.map(|t| serde_json::from_str(t).map_err(StoreError::from))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// One token record, with `act` parsed and `active` at `now`.
pub fn token_json(r: &TokenRecord, now: i64) -> StoreResult<Value> {
    Ok(json!({
        "jti": r.jti,
        "kind": r.kind.as_str(),
        "sub": r.subject,
        "subject_kind": r.subject_kind.as_str(),
        "client_id": r.client_id,
        "client_kind": r.client_kind,
        "act": stored_json(r.actor_chain.as_deref())?,
        "aud": r.audience,
        "scope": r.scope,
        "task": r.task,
        "iat": r.issued_at,
        "exp": r.expires_at,
        "parent_jti": r.parent_jti,
        "grant_id": r.grant_id,
        "grant_type": r.grant_type,
        "rule_id": r.rule_id,
        "may_act": r.may_act,
        "actor_token_jti": r.actor_token_jti,
        "cnf": r.cnf_jkt.as_ref().map(|jkt| json!({ "jkt": jkt })),
        "active": r.is_active(now),
        "revoked_at": r.revoked_at,
        "revoked_reason": r.revoked_reason,
    }))
}

fn tokens_json(records: &[TokenRecord], now: i64) -> StoreResult<Value> {
    records
        .iter()
        .map(|r| token_json(r, now))
        .collect::<StoreResult<Vec<_>>>()
        .map(Value::Array)
}

fn grant_json(g: &GrantRow) -> Value {
    json!({
        "id": g.grant.id,
        "grant_type": g.grant.grant_type,
        "sub": g.grant.subject,
        "client_id": g.grant.client_id,
        "scope": g.grant.scope,
        "auth_time": g.grant.auth_time,
        "created_at": g.grant.created_at,
        "active": g.revoked_at.is_none(),
        "revoked_at": g.revoked_at,
    })
}

/// `GET /admin/tokens`: the records matching `f`, oldest first.
pub fn list(conn: &dyn Db, f: &TokenFilter, now: i64) -> StoreResult<Value> {
    tokens_json(&lineage::list(conn, f, now)?, now)
}

/// `GET /admin/tokens/{jti}`, `deputy trace`: which person or service, which
/// chain of actors, which task, what scope, under which rule, granted when.
/// `None` for an unknown `jti`.
pub fn trace(conn: &dyn Db, jti: &str, now: i64) -> StoreResult<Option<Value>> {
    let Some(token) = crate::store::tokens::get(conn, jti)? else {
        return Ok(None);
    };
    let ancestors = lineage::ancestors(conn, &token)?;
    let descendants = lineage::descendants(conn, jti)?;
    // The grant it hangs from: its own, or the nearest ancestor's (a token
    // derived by exchange may carry none of its own).
    let grant_id = std::iter::once(&token)
        .chain(&ancestors)
        .find_map(|r| r.grant_id.clone());
    let grant = match grant_id {
        Some(id) => lineage::grant(conn, &id)?.map(|g| grant_json(&g)),
        None => None,
    };
    Ok(Some(json!({
        "token": token_json(&token, now)?,
        "ancestors": tokens_json(&ancestors, now)?,
        "descendants": tokens_json(&descendants, now)?,
        "grant": grant,
    })))
}

/// Stored JSON text in an audit event. The trail is append-only and never
/// rewritten, so one odd row is shown as it is rather than hiding the rest.
fn event_json_field(text: Option<&str>) -> Value {
    match text {
        None => Value::Null,
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string())),
    }
}

pub fn event_json(e: &AuditEvent) -> Value {
    json!({
        "id": e.id,
        "at": e.at,
        "event": e.event,
        "mode": e.mode,
        "outcome": e.outcome,
        "person": e.person,
        "client_id": e.client_id,
        "client_kind": e.client_kind,
        "act": event_json_field(e.actor_chain.as_deref()),
        "aud": e.audience,
        "scope": e.scope,
        "task": e.task,
        "jti": e.jti,
        "parent_jti": e.parent_jti,
        "rule_id": e.rule_id,
        "reason": e.reason,
        "detail": event_json_field(e.detail.as_deref()),
    })
}

/// `GET /admin/audit`, `deputy audit`: the trail, oldest first (newest last).
/// `person` is the person's id (a token's `sub`) or their username.
pub fn audit(conn: &dyn Db, q: &AuditQuery) -> StoreResult<Value> {
    let mut q = q.clone();
    if let Some(p) = &q.person {
        if crate::store::users::by_id(conn, p)?.is_none() {
            if let Some(u) = crate::store::users::by_username(conn, p)? {
                q.person = Some(u.id);
            }
        }
    }
    Ok(Value::Array(
        crate::store::audit::query(conn, &q)?
            .iter()
            .map(event_json)
            .collect(),
    ))
}
