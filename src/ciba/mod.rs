//! Asking the person first: OpenID CIBA Core 1.0 in poll mode. What a
//! backchannel authentication request may ask for (pure), which requests a
//! person has waiting, and the person's decision on one. The request's
//! creation and its redemption at `/token` are `grant::ciba`.

pub mod notify;

use crate::audit::{AuditEvent, Mode};
use crate::error::{ErrorCode, OAuthError};
use crate::grant::authorization_code::request::{IGNORED_OIDC_SCOPES, OIDC_SCOPES};
use crate::policy::{delegation::is_valid_task, parse_scope, requested_audience};
use crate::store::backchannel::{self, Status};
use crate::store::clients::Client;
use crate::store::{Db, StoreResult};

/// A request waits for the person this long at least and at most, seconds:
/// a `requested_expiry` outside is brought into it.
pub const EXPIRY_RANGE: std::ops::RangeInclusive<i64> = 10..=1800;
/// CIBA Core §7.1: a binding message is short enough to show on a device.
pub const BINDING_MESSAGE_MAX: usize = 64;
/// How much a `slow_down` adds to the interval (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP: i64 = 5;

/// The parameters of a backchannel authentication request (CIBA Core
/// §7.1), as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackchannelParams {
    pub scope: Option<String>,
    pub login_hint: Option<String>,
    pub id_token_hint: Option<String>,
    pub login_hint_token: Option<String>,
    pub binding_message: Option<String>,
    pub requested_expiry: Option<String>,
    pub resource: Option<String>,
    /// deputy's own parameter: what the agent will do with the access.
    pub task: Option<String>,
    /// A signed request object (CIBA Core §7.1.1), not supported.
    pub request: Option<String>,
}

/// Who the request is about, as the client named them (exactly one hint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// A username.
    LoginHint(String),
    /// An ID token deputy issued (it may have expired).
    IdTokenHint(String),
}

/// A checked backchannel authentication request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRequest {
    pub scope: Vec<String>,
    /// The audience the access token will carry.
    pub resource: String,
    pub hint: Hint,
    pub binding_message: Option<String>,
    /// Seconds until the request expires.
    pub expires_in: i64,
    pub task: Option<String>,
}

/// CIBA Core §7.1 and §13: check a request from `client` (already
/// authenticated and registered for the grant). `default_expiry` is the
/// `ciba_default_expiry` setting; `default_resource` is the audience when
/// none is asked for (the issuer, as at `/authorize`).
pub fn validate(
    client: &Client,
    p: &BackchannelParams,
    default_expiry: i64,
    default_resource: &str,
) -> Result<CheckedRequest, OAuthError> {
    if p.request.is_some() {
        return Err(OAuthError::invalid_request(
            "signed authentication requests are not supported",
        ));
    }
    // CIBA Core §7.1: scope is REQUIRED and, this being OpenID, has openid.
    let mut scope = parse_scope(p.scope.as_deref().unwrap_or(""))?;
    scope.retain(|s| !IGNORED_OIDC_SCOPES.contains(&s.as_str()) || client.scopes.contains(s));
    if !scope.iter().any(|s| s == "openid") {
        return Err(OAuthError::invalid_scope("scope must include openid"));
    }
    if scope
        .iter()
        .any(|s| !OIDC_SCOPES.contains(&s.as_str()) && !client.scopes.contains(s))
    {
        return Err(OAuthError::invalid_scope(
            "requested scope is not allowed for this client",
        ));
    }
    let hint = match (&p.login_hint, &p.id_token_hint, &p.login_hint_token) {
        (Some(h), None, None) => Hint::LoginHint(h.clone()),
        (None, Some(t), None) => Hint::IdTokenHint(t.clone()),
        (None, None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "login_hint_token is not supported",
            ))
        }
        // CIBA Core §7.1: exactly one hint.
        _ => {
            return Err(OAuthError::invalid_request(
                "exactly one of login_hint and id_token_hint is required",
            ))
        }
    };
    let binding_message = match &p.binding_message {
        Some(m) if !is_valid_binding_message(m) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidBindingMessage,
                "binding_message must be 1-64 characters a person can read (no control, invisible or bidirectional formatting characters)",
            ))
        }
        other => other.clone(),
    };
    // CIBA Core §7.1: a positive integer, which the server MAY use to
    // influence the lifetime. deputy brings it into its bounds, which keep a
    // request from waiting for seconds nobody can act in, or for hours.
    let expires_in = match &p.requested_expiry {
        None => default_expiry,
        Some(v) => positive_seconds(v)
            .map(|n| n.clamp(*EXPIRY_RANGE.start(), *EXPIRY_RANGE.end()))
            .ok_or_else(|| {
                OAuthError::invalid_request(
                    "requested_expiry must be a positive whole number of seconds",
                )
            })?,
    };
    // RFC 8707 §2: the one resource must be one the client may obtain
    // tokens for (narrowed as at /authorize).
    let resource = match requested_audience(p.resource.as_deref(), None)? {
        Some(r) if client.audiences.contains(&r) => r,
        Some(_) => {
            return Err(OAuthError::invalid_target(
                "the client may not obtain tokens for this resource",
            ))
        }
        None => default_resource.to_string(),
    };
    if p.task.as_deref().is_some_and(|t| !is_valid_task(t)) {
        return Err(OAuthError::invalid_request(
            "task must be 1-128 characters a person can read (no control, invisible or bidirectional formatting characters)",
        ));
    }
    Ok(CheckedRequest {
        scope,
        resource,
        hint,
        binding_message,
        expires_in,
        task: p.task.clone(),
    })
}

/// Digits only, at least 1 (a huge value is as good as the maximum).
fn positive_seconds(v: &str) -> Option<i64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match v.parse::<i64>() {
        Ok(n) => Some(n).filter(|n| *n >= 1),
        Err(_) => Some(i64::MAX),
    }
}

/// CIBA Core §7.1: shown to the person on the page and on the agent's
/// screen, so short and readable (`is_shown_char`).
pub fn is_valid_binding_message(m: &str) -> bool {
    let n = m.chars().count();
    (1..=BINDING_MESSAGE_MAX).contains(&n)
        && m.chars().all(crate::policy::delegation::is_shown_char)
}

/// A request waiting for the person, as their page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    pub handle: String,
    pub client_id: String,
    pub client_name: String,
    pub is_agent: bool,
    pub task: Option<String>,
    pub scopes: Vec<String>,
    pub resource: String,
    pub binding_message: Option<String>,
    pub seconds_left: i64,
    /// Not shown to the person before.
    pub first_shown: bool,
}

/// The requests waiting for `user_id` now, oldest first.
pub fn pending_for(conn: &dyn Db, user_id: &str, now: i64) -> StoreResult<Vec<PendingApproval>> {
    Ok(backchannel::pending_for(conn, user_id, now)?
        .into_iter()
        .map(|row| PendingApproval {
            handle: row.record.handle,
            client_id: row.record.client_id,
            client_name: row.client_name,
            is_agent: row.client_kind == crate::model::ClientKind::Agent.as_str(),
            task: row.record.task,
            scopes: row
                .record
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            resource: row.record.resource,
            binding_message: row.record.binding_message,
            seconds_left: row.record.expires_at - now,
            first_shown: row.record.shown_at.is_none(),
        })
        .collect())
}

/// Record that the page showed these requests to their person: a
/// `ciba_shown` event the first time each is shown.
pub fn mark_shown(
    conn: &dyn Db,
    user_id: &str,
    shown: &[PendingApproval],
    now: i64,
) -> StoreResult<()> {
    for p in shown.iter().filter(|p| p.first_shown) {
        if backchannel::mark_shown(conn, &p.handle, user_id, now)? {
            let mut e = AuditEvent::new(now, "ciba_shown", Mode::Person)
                .person(Some(user_id))
                .detail(serde_json::json!({"handle": p.handle}));
            e.client_id = Some(p.client_id.clone());
            e.scope = Some(p.scopes.join(" "));
            e.audience = Some(p.resource.clone());
            e.task = p.task.clone();
            crate::store::audit::insert(conn, &e)?;
        }
    }
    Ok(())
}

/// The person's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Decision::Approve),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

/// Why a decision was not taken: the request is not this person's, not
/// pending, expired or unknown (one answer for all, so a handle tells
/// nobody else anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotDecidable;

/// The person `user_id` decides on the request `handle`: only the person it
/// names, only while it is pending and unexpired, in one statement; the
/// decision is audited as the person's act in the same transaction. The
/// approval covers this request only: no consent is remembered.
pub fn decide(
    conn: &dyn Db,
    user_id: &str,
    handle: &str,
    decision: Decision,
    now: i64,
    auth_time: i64,
) -> StoreResult<Result<Decision, NotDecidable>> {
    let (to, event) = match decision {
        Decision::Approve => (Status::Approved, "ciba_approved"),
        Decision::Deny => (Status::Denied, "ciba_denied"),
    };
    if !backchannel::decide(conn, handle, user_id, to, now, auth_time)? {
        return Ok(Err(NotDecidable));
    }
    let Some(rec) = backchannel::by_handle(conn, handle)? else {
        return Ok(Err(NotDecidable));
    };
    let mut e = AuditEvent::new(now, event, Mode::Person)
        .person(Some(user_id))
        .detail(serde_json::json!({"handle": handle}));
    e.client_id = Some(rec.client_id);
    e.scope = Some(rec.scope);
    e.audience = Some(rec.resource);
    e.task = rec.task;
    crate::store::audit::insert(conn, &e)?;
    Ok(Ok(decision))
}

#[cfg(test)]
mod tests;
