//! The person's own account (`/account`), as data: which apps and agents
//! hold access for them, grouped by client — remembered consent, live
//! refresh families, live delegation tokens with their chain of agents, and
//! the chains that hang from each client's access — and their recent
//! activity from the audit trail. Built by store queries, rendered by
//! `http::account`; withdrawals are `withdraw`. No token values and no
//! refresh token hashes ever reach this model.

pub mod withdraw;

use std::collections::BTreeMap;

use crate::audit::AuditEvent;
use crate::store::account::{self as queries, FamilyRow};
use crate::store::tokens::TokenRecord;
use crate::store::{Db, StoreError, StoreResult};

/// Events per page of recent activity.
pub const ACTIVITY_PAGE: i64 = 20;

/// Everything the person's page lists, one entry per client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holdings {
    pub clients: Vec<ClientAccess>,
}

/// What one client (app, agent or service) holds for the person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientAccess {
    pub client_id: String,
    /// The registered name (a self-registered client's own claim), or the
    /// id when the client is no longer registered.
    pub name: String,
    /// `app`, `agent` or `service`; `None` once the client is removed.
    pub kind: Option<String>,
    pub consents: Vec<ConsentGiven>,
    pub families: Vec<FamilyRow>,
    /// Live access tokens without an `act` chain: how many, and the last expiry.
    pub direct: Option<(i64, i64)>,
    /// Live delegation tokens this client holds for the person.
    pub delegations: Vec<Delegation>,
    /// Live delegation tokens other clients hold that derive from this
    /// client's access (withdrawing it ends them too).
    pub chains: Vec<Delegation>,
    /// The tasks of `families` and `delegations`, each once, for withdrawal
    /// per task.
    pub tasks: Vec<String>,
}

/// The scopes a person allowed a client at one resource (RFC 8707 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentGiven {
    pub resource: String,
    pub scopes: Vec<String>,
    /// The latest time one of these scopes was allowed.
    pub granted_at: i64,
}

/// One live delegation token, as the person sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// The client holding it (the current actor).
    pub holder: String,
    /// The `act` chain, the current actor first (RFC 8693 §4.1).
    pub chain: Vec<String>,
    pub audience: String,
    pub scope: String,
    pub task: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// The actors of a stored `act` claim, outermost (current) first
/// (RFC 8693 §4.1: each nested `act` is the prior actor). `None` when the
/// text is not such a claim.
pub fn actors(act: &str) -> Option<Vec<String>> {
    let mut node: serde_json::Value = serde_json::from_str(act).ok()?;
    let mut out = Vec::new();
    while let Some(obj) = node.as_object() {
        out.push(obj.get("sub")?.as_str()?.to_string());
        match obj.get("act") {
            Some(next) => node = next.clone(),
            None => return Some(out),
        }
        if out.len() > 64 {
            return None;
        }
    }
    None
}

fn delegation(t: &TokenRecord) -> StoreResult<Delegation> {
    let chain = match t.actor_chain.as_deref() {
        Some(act) => actors(act)
            .ok_or_else(|| StoreError::Corrupt(format!("act chain of token {}", t.jti)))?,
        None => Vec::new(),
    };
    Ok(Delegation {
        holder: t.client_id.clone(),
        chain,
        audience: t.audience.clone(),
        scope: t.scope.clone(),
        task: t.task.clone(),
        issued_at: t.issued_at,
        expires_at: t.expires_at,
    })
}

/// Offer `task` for withdrawal once.
fn add_task(tasks: &mut Vec<String>, task: Option<&String>) {
    if let Some(t) = task {
        if !tasks.contains(t) {
            tasks.push(t.clone());
        }
    }
}

/// What every client holds for `person` at `now`, ordered by client id.
pub fn holdings(conn: &dyn Db, person: &str, now: i64) -> StoreResult<Holdings> {
    let mut by_client: BTreeMap<String, ClientAccess> = BTreeMap::new();
    fn entry<'m>(map: &'m mut BTreeMap<String, ClientAccess>, id: &str) -> &'m mut ClientAccess {
        map.entry(id.to_string()).or_insert_with(|| ClientAccess {
            client_id: id.to_string(),
            ..Default::default()
        })
    }
    for c in queries::consents(conn, person)? {
        let access = entry(&mut by_client, &c.client_id);
        match access.consents.last_mut() {
            Some(last) if last.resource == c.resource => {
                last.scopes.push(c.scope);
                last.granted_at = last.granted_at.max(c.granted_at);
            }
            _ => access.consents.push(ConsentGiven {
                resource: c.resource,
                scopes: vec![c.scope],
                granted_at: c.granted_at,
            }),
        }
    }
    for f in queries::live_families(conn, person, now)? {
        let access = entry(&mut by_client, &f.client_id);
        add_task(&mut access.tasks, f.task.as_ref());
        access.families.push(f);
    }
    for (client_id, count, until) in queries::live_direct_access(conn, person, now)? {
        entry(&mut by_client, &client_id).direct = Some((count, until));
    }
    for t in queries::live_delegations(conn, person, now)? {
        let d = delegation(&t)?;
        let access = entry(&mut by_client, &t.client_id);
        add_task(&mut access.tasks, d.task.as_ref());
        access.delegations.push(d);
    }
    let mut clients = Vec::with_capacity(by_client.len());
    for (id, mut access) in by_client {
        access.chains = queries::chains_from(conn, person, &id, now)?
            .iter()
            .map(delegation)
            .collect::<StoreResult<_>>()?;
        match crate::store::clients::get(conn, &id)? {
            Some(c) => {
                access.name = c.name;
                access.kind = Some(c.kind.as_str().to_string());
            }
            None => access.name = id.clone(),
        }
        clients.push(access);
    }
    Ok(Holdings { clients })
}

/// One page of the person's activity, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    pub events: Vec<ActivityItem>,
    /// The cursor for the next (older) page, when there is one.
    pub older: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityItem {
    pub id: i64,
    pub at: i64,
    /// What happened, in plain words.
    pub what: &'static str,
    pub event: String,
    pub refused: bool,
    pub client_id: Option<String>,
    /// The chain of agents, the current actor first; the stored text as it
    /// is when it is not a chain (the trail is never rewritten).
    pub chain: Vec<String>,
    pub task: Option<String>,
    pub audience: Option<String>,
    pub scope: Option<String>,
}

/// Plain words for an audit event name.
pub fn describe(event: &str) -> &'static str {
    match event {
        "login" => "Signed in",
        "login_failed" => "Sign-in failed",
        "login_throttled" => "Sign-in attempts slowed down",
        "logout" => "Signed out",
        "signed_out_everywhere" => "Signed out everywhere",
        "consent_given" => "Allowed access",
        "consent_denied" => "Denied access",
        "consent_withdrawn" => "Access withdrawn",
        "task_withdrawn" => "Task withdrawn",
        "code_issued" => "Sign-in code issued to an app",
        "code_redeemed" => "App completed the sign-in",
        "code_refused" | "code_replayed" => "Sign-in code refused",
        "token_issued" => "Token issued",
        // Also shown for a refused exchange, marked refused on the page.
        "token_exchange" => "Token for an agent acting for you",
        "ciba_requested" => "An app asked for your approval",
        "ciba_shown" => "Request shown to you",
        "ciba_approved" => "You approved a request",
        "ciba_denied" => "You denied a request",
        "ciba_redeemed" => "Approved request used by the app",
        "ciba_expired" => "Request expired unanswered",
        "person_added" => "Account created",
        "refresh_rotated" | "refresh_retried" => "Access renewed",
        "refresh_reuse_detected" => "Reused refresh token: access ended",
        "token_revoked" => "Token revoked by an app",
        "admin_revoke" => "Access revoked by an administrator",
        "person_disabled" => "Account disabled",
        "person_updated" => "Account updated",
        _ => "Other event",
    }
}

fn activity_item(e: AuditEvent) -> ActivityItem {
    let chain = match e.actor_chain.as_deref() {
        Some(act) => actors(act).unwrap_or_else(|| vec![act.to_string()]),
        None => Vec::new(),
    };
    ActivityItem {
        id: e.id,
        at: e.at,
        what: describe(&e.event),
        refused: e.outcome != "ok",
        event: e.event,
        client_id: e.client_id,
        chain,
        task: e.task,
        audience: e.audience,
        scope: e.scope,
    }
}

/// The person's events before the cursor `before` (newest first), one page.
pub fn activity(conn: &dyn Db, person: &str, before: Option<i64>) -> StoreResult<Activity> {
    let mut events = crate::store::audit::of_person(conn, person, before, ACTIVITY_PAGE + 1)?;
    let more = events.len() as i64 > ACTIVITY_PAGE;
    events.truncate(usize::try_from(ACTIVITY_PAGE).unwrap_or(20));
    let older = if more {
        events.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Activity {
        events: events.into_iter().map(activity_item).collect(),
        older,
    })
}

/// The CSRF token of the account page's forms: bound to the login session
/// (an HMAC of its stored id hash under a server secret every instance
/// shares), so nothing is kept in memory and another session's page is no
/// use (OWASP CSRF Prevention, "HMAC based token").
pub fn csrf_token(key: &str, session_id_hash: &str) -> Result<String, String> {
    crate::secret::hmac_b64(key, "deputy account form", session_id_hash.as_bytes())
}

/// `presented` is this session's CSRF token (compared in constant time).
pub fn csrf_matches(key: &str, session_id_hash: &str, presented: Option<&str>) -> bool {
    match (presented, csrf_token(key, session_id_hash)) {
        (Some(p), Ok(expected)) => {
            crate::secret::constant_time_eq(p.as_bytes(), expected.as_bytes())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_outermost_first() {
        assert_eq!(
            actors(r#"{"sub":"agent-y","act":{"sub":"agent-x"}}"#),
            Some(vec!["agent-y".to_string(), "agent-x".to_string()])
        );
        assert_eq!(actors(r#"{"sub":"a"}"#), Some(vec!["a".to_string()]));
        assert_eq!(actors("not json"), None);
        assert_eq!(actors(r#"{"act":{"sub":"x"}}"#), None);
        assert_eq!(actors(r#"["a"]"#), None);
    }

    #[test]
    fn csrf_is_per_session_and_key() {
        let t = csrf_token("k1", "session-a").unwrap();
        assert!(csrf_matches("k1", "session-a", Some(&t)));
        assert!(!csrf_matches("k1", "session-b", Some(&t)));
        assert!(!csrf_matches("k2", "session-a", Some(&t)));
        assert!(!csrf_matches("k1", "session-a", None));
        assert!(!csrf_matches("k1", "session-a", Some("")));
    }

    #[test]
    fn every_event_a_person_sees_has_words() {
        for e in [
            "login",
            "token_exchange",
            "consent_withdrawn",
            "signed_out_everywhere",
            "ciba_requested",
            "ciba_shown",
            "ciba_approved",
            "ciba_denied",
            "ciba_redeemed",
            "ciba_expired",
            "person_added",
        ] {
            assert_ne!(describe(e), "Other event", "{e}");
        }
        assert_eq!(describe("x"), "Other event");
    }
}
