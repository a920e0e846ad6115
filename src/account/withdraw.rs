//! What a person can stop from their account page. Each function runs in
//! the caller's one transaction (a write job): the revocation cascade and
//! the audit event, recorded as the person's own act (`admin::Origin::Person`,
//! mode `person`), commit together or not at all. Every statement touches
//! only the person's rows not yet revoked, so a repeat changes nothing and
//! writes no event; another person's client or task matches nothing.

use serde_json::{json, Map, Value};

use crate::admin::revoke::{revoke_grants, CONSENT_REASON};
use crate::admin::Origin;
use crate::audit::AuditEvent;
use crate::store::lineage::{self, Roots};
use crate::store::{Db, StoreResult};

/// `revoked_reason` of tokens the person withdrew by task.
pub const TASK_REASON: &str = "task_withdrawn";
/// `revoked_reason` of tokens ended by "sign out everywhere".
pub const SIGN_OUT_REASON: &str = "signed_out_everywhere";

/// What withdrawing a client changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientWithdrawn {
    /// A remembered consent existed and is gone.
    pub consent: bool,
    /// Grants (refresh families) that were live and are revoked now.
    pub grants: usize,
    /// Tokens that changed state (descendants included).
    pub revoked: usize,
    /// Backchannel (CIBA) requests, pending or approved, ended as denied.
    pub requests: usize,
}

impl ClientWithdrawn {
    pub fn changed_anything(&self) -> bool {
        self.consent || self.grants > 0 || self.revoked > 0 || self.requests > 0
    }
}

fn audit(
    conn: &dyn Db,
    origin: &Origin,
    event: AuditEvent,
    mut detail: Map<String, Value>,
) -> StoreResult<()> {
    let mut event = origin.stamp(event, &mut detail);
    event.detail = Some(Value::Object(detail).to_string());
    crate::store::audit::insert(conn, &event)
}

/// Withdraw a client: the person's consent for it is forgotten, every grant
/// of the person for it is revoked with its refresh family and every token
/// issued under it, with descendants (as `admin::revoke::withdraw_consent`);
/// and, so an agent that only holds delegated access stops too, the
/// person's tokens it can still use — issued to it, naming it in their `act`
/// chain, or addressed to it (RFC 8693 §2.1: it may exchange those) — with
/// everything derived from them.
pub fn client(
    conn: &dyn Db,
    person: &str,
    client_id: &str,
    origin: &Origin,
    now: i64,
) -> StoreResult<ClientWithdrawn> {
    let consent = crate::store::consents::withdraw(conn, person, client_id)?;
    let mut grant_ids = lineage::grants_of(conn, person, client_id)?;
    // RFC 7009 §2.1: a refresh token among those tokens takes its family with it.
    grant_ids.extend(lineage::refresh_grants_in_tree(
        conn,
        Roots::Actor(Some(person)),
        client_id,
    )?);
    grant_ids.sort();
    grant_ids.dedup();
    let grants = lineage::live_grants(conn, &grant_ids)?;
    let mut revoked = revoke_grants(conn, &grant_ids, now, CONSENT_REASON)?;
    revoked += lineage::revoke_tree_of(
        conn,
        Roots::Actor(Some(person)),
        client_id,
        now,
        CONSENT_REASON,
    )?;
    // Requests the client asked the person (CIBA), approved or not: no
    // token comes of them any more.
    let requests =
        crate::store::backchannel::withdraw_for(conn, person, Some(client_id), None, now)?;
    let done = ClientWithdrawn {
        consent,
        grants,
        revoked,
        requests,
    };
    if done.changed_anything() {
        let kind = crate::store::clients::get(conn, client_id)?.map(|c| c.kind.as_str());
        let mut event =
            AuditEvent::new(now, "consent_withdrawn", origin.mode()).person(Some(person));
        event.client_id = Some(client_id.to_string());
        event.client_kind = kind.map(str::to_string);
        let mut detail = Map::new();
        detail.insert("consent".into(), json!(consent));
        detail.insert("grants".into(), json!(grants));
        detail.insert("revoked".into(), json!(revoked));
        detail.insert("requests_withdrawn".into(), json!(requests));
        audit(conn, origin, event, detail)?;
    }
    Ok(done)
}

/// Withdraw one task of a client: the person's tokens for that task the
/// client can use (`lineage::revoke_task`), everything derived from them, the refresh families issued
/// for that task (CIBA) with their tokens, and the client's open
/// backchannel requests for that task.
pub fn task(
    conn: &dyn Db,
    person: &str,
    client_id: &str,
    task: &str,
    origin: &Origin,
    now: i64,
) -> StoreResult<TaskWithdrawn> {
    let families = lineage::task_grants(conn, person, client_id, task)?;
    let mut revoked = revoke_grants(conn, &families, now, TASK_REASON)?;
    revoked += lineage::revoke_task(conn, person, client_id, task, now, TASK_REASON)?;
    let requests =
        crate::store::backchannel::withdraw_for(conn, person, Some(client_id), Some(task), now)?;
    if revoked + requests > 0 {
        let mut event = AuditEvent::new(now, "task_withdrawn", origin.mode()).person(Some(person));
        event.client_id = Some(client_id.to_string());
        event.task = Some(task.to_string());
        let mut detail = Map::new();
        detail.insert("revoked".into(), json!(revoked));
        detail.insert("requests_withdrawn".into(), json!(requests));
        audit(conn, origin, event, detail)?;
    }
    Ok(TaskWithdrawn { revoked, requests })
}

/// What withdrawing one task changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskWithdrawn {
    /// Tokens that changed state (descendants included).
    pub revoked: usize,
    /// Backchannel (CIBA) requests for the task, pending or approved, ended.
    pub requests: usize,
}

/// What "sign out everywhere" ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignedOut {
    /// Login sessions, this one included.
    pub sessions: usize,
    /// Grants (refresh families) that were live.
    pub grants: usize,
    /// Tokens that changed state (descendants included).
    pub revoked: usize,
    /// Backchannel (CIBA) requests, pending or approved, ended as denied.
    pub requests: usize,
}

/// End every login session of the person and revoke every refresh family
/// (RFC 9700 §4.14.2) and every live token issued for them, with
/// descendants. Consent stays: signing out is not forgetting what was allowed.
pub fn everywhere(
    conn: &dyn Db,
    person: &str,
    origin: &Origin,
    now: i64,
) -> StoreResult<SignedOut> {
    let sessions = crate::store::sessions::delete_sessions_of(conn, person)?;
    let grant_ids = lineage::grants_of_subject(conn, person)?;
    let grants = lineage::live_grants(conn, &grant_ids)?;
    let mut revoked = revoke_grants(conn, &grant_ids, now, SIGN_OUT_REASON)?;
    revoked += crate::store::tokens::revoke_subject(conn, person, now, SIGN_OUT_REASON)?;
    // Requests agents asked the person (CIBA), approved or not.
    let requests = crate::store::backchannel::withdraw_for(conn, person, None, None, now)?;
    let out = SignedOut {
        sessions,
        grants,
        revoked,
        requests,
    };
    let event = AuditEvent::new(now, "signed_out_everywhere", origin.mode()).person(Some(person));
    let mut detail = Map::new();
    detail.insert("sessions".into(), json!(sessions));
    detail.insert("grants".into(), json!(grants));
    detail.insert("revoked".into(), json!(revoked));
    detail.insert("requests_withdrawn".into(), json!(requests));
    audit(conn, origin, event, detail)?;
    Ok(out)
}
