//! Administrative revocation with cascade, and consent withdrawal.
//!
//! Each function runs inside the caller's transaction (the store writer's
//! savepoint, or the CLI's IMMEDIATE transaction): the tokens, their
//! descendants at any depth, the grants and refresh families, and the audit
//! event change together or not at all. Every statement touches only rows not
//! yet revoked, so the count is "tokens that changed state" and a repeat is 0.

use crate::store::Db;
use serde_json::{json, Map, Value};

use super::{Origin, Selector};
use crate::audit::AuditEvent;
use crate::store::lineage::{self, Roots};
use crate::store::{refresh, tokens, StoreResult};

/// `revoked_reason` written on every token an administrator's revocation reaches.
pub const REASON: &str = "revoked_by_admin";
/// `revoked_reason` for tokens of a grant whose consent was withdrawn.
pub const CONSENT_REASON: &str = "consent_withdrawn";

/// Revoke grants: the grant row, its refresh family (so refresh stops
/// working, RFC 9700 §4.14.2) and every token issued under it, with
/// descendants. Returns how many tokens changed state.
pub(crate) fn revoke_grants(
    conn: &dyn Db,
    grant_ids: &[String],
    now: i64,
    reason: &str,
) -> StoreResult<usize> {
    let mut count = 0;
    for g in grant_ids {
        count += refresh::revoke_family(conn, g, now, reason)?.tokens;
    }
    Ok(count)
}

/// The subject as a person, when it is one (for the audit event's `person`).
fn person(conn: &dyn Db, id: &str) -> StoreResult<Option<String>> {
    Ok(crate::store::users::by_id(conn, id)?.map(|u| u.id))
}

/// Revoke what `sel` selects, with cascade, and record who did it.
/// Returns how many tokens changed state (0 for an unknown selector value).
pub fn revoke(conn: &dyn Db, sel: &Selector, origin: &Origin, now: i64) -> StoreResult<usize> {
    // First the grants whose refresh families must die too: a person's or a
    // client's grants, the named grant, and the family of any refresh token
    // among the selected tokens (RFC 7009 §2.1: revoking a refresh token
    // revokes its family).
    let grants = match sel {
        Selector::Jti(j) => lineage::refresh_grants_in_tree(conn, Roots::Jti, j)?,
        Selector::Actor(a, s) => {
            // Also the actor's own grants from people (for one person, or
            // all): an outstanding code hangs from one, and its redemption
            // re-checks it, so a code obtained just before this revocation
            // redeems into nothing.
            let mut g = lineage::refresh_grants_in_tree(conn, Roots::Actor(s.as_deref()), a)?;
            g.extend(match s {
                Some(s) => lineage::grants_of(conn, s, a)?,
                None => lineage::grants_of_client(conn, a)?,
            });
            g.sort();
            g.dedup();
            g
        }
        Selector::Sub(s) => lineage::grants_of_subject(conn, s)?,
        Selector::Client(c) => lineage::grants_of_client(conn, c)?,
        Selector::Grant(g) => vec![g.clone()],
    };
    let mut count = revoke_grants(conn, &grants, now, REASON)?;
    // What the person allowed the actor is withdrawn with it, so prompt=none
    // cannot silently start it again.
    let consents = match sel {
        Selector::Actor(a, Some(s)) => usize::from(crate::store::consents::withdraw(conn, s, a)?),
        Selector::Actor(a, None) => crate::store::consents::withdraw_all_for_client(conn, a)?,
        _ => 0,
    };
    // Backchannel (CIBA) requests that could still yield tokens for what is
    // selected: the person's, the client's, or the actor's (for one person
    // or all).
    let requests = match sel {
        Selector::Sub(s) => crate::store::backchannel::withdraw_for(conn, s, None, None, now)?,
        Selector::Actor(a, Some(s)) => {
            crate::store::backchannel::withdraw_for(conn, s, Some(a), None, now)?
        }
        Selector::Actor(c, None) | Selector::Client(c) => {
            crate::store::backchannel::end_for_client(conn, c, now)?
        }
        Selector::Jti(_) | Selector::Grant(_) => 0,
    };
    // Then the selected tokens themselves, and everything derived from them
    // (recursive over both parents, parent_jti and actor_token_jti; one
    // statement each).
    count += match sel {
        Selector::Jti(j) => tokens::revoke_tree(conn, j, now, REASON)?,
        Selector::Actor(a, s) => {
            lineage::revoke_tree_of(conn, Roots::Actor(s.as_deref()), a, now, REASON)?
        }
        Selector::Sub(s) => tokens::revoke_subject(conn, s, now, REASON)?,
        Selector::Client(c) => tokens::revoke_client(conn, c, now, REASON)?,
        Selector::Grant(_) => 0,
    };
    let mut detail = Map::new();
    detail.insert("selector".into(), sel.to_json());
    detail.insert("revoked".into(), json!(count));
    detail.insert("grants".into(), json!(grants.len()));
    if requests > 0 {
        detail.insert("requests_withdrawn".into(), json!(requests));
    }
    if matches!(sel, Selector::Actor(..)) {
        detail.insert("consents_withdrawn".into(), json!(consents));
    }
    let mut event = origin.stamp(
        AuditEvent::new(now, "admin_revoke", origin.mode()),
        &mut detail,
    );
    match sel {
        Selector::Jti(j) => event.jti = Some(j.clone()),
        Selector::Sub(s) => event.person = person(conn, s)?,
        Selector::Grant(g) => {
            if let Some(row) = lineage::grant(conn, g)? {
                event.person = person(conn, &row.grant.subject)?;
            }
        }
        Selector::Actor(_, Some(s)) => event.person = person(conn, s)?,
        Selector::Client(_) | Selector::Actor(_, None) => {}
    }
    event.detail = Some(Value::Object(detail).to_string());
    // Counted like the revocation endpoint: a revocation that changed
    // something (README, Metrics), not every call.
    if count + consents + requests > 0 {
        crate::metrics::revoked_by_admin();
    }
    crate::store::audit::insert(conn, &event)?;
    Ok(count)
}

/// What withdrawing consent changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// A remembered consent existed and is gone.
    pub consent: bool,
    /// Grants of the person for the client that were live and are now revoked.
    pub grants: usize,
    /// Tokens that changed state.
    pub revoked: usize,
}

/// Withdraw a person's remembered consent for a client and revoke every grant
/// of that person for that client, with their refresh families and tokens.
/// `client_kind` is the client's kind when it is still registered.
pub fn withdraw_consent(
    conn: &dyn Db,
    user_id: &str,
    client_id: &str,
    client_kind: Option<&str>,
    origin: &Origin,
    now: i64,
) -> StoreResult<Withdrawal> {
    let consent = crate::store::consents::withdraw(conn, user_id, client_id)?;
    // The client's open backchannel (CIBA) requests to the person end too.
    let requests =
        crate::store::backchannel::withdraw_for(conn, user_id, Some(client_id), None, now)?;
    let grant_ids = lineage::grants_of(conn, user_id, client_id)?;
    let grants = lineage::live_grants(conn, &grant_ids)?;
    let revoked = revoke_grants(conn, &grant_ids, now, CONSENT_REASON)?;
    let mut detail = Map::new();
    detail.insert("consent".into(), json!(consent));
    detail.insert("grants".into(), json!(grants));
    detail.insert("revoked".into(), json!(revoked));
    if requests > 0 {
        detail.insert("requests_withdrawn".into(), json!(requests));
    }
    let mut event = origin.stamp(
        AuditEvent::new(now, "consent_withdrawn", origin.mode()).person(Some(user_id)),
        &mut detail,
    );
    // The client whose consent was withdrawn, unless an API admin is already
    // recorded as the event's client (then it goes into the detail).
    if event.client_id.is_none() {
        event.client_id = Some(client_id.to_string());
        event.client_kind = client_kind.map(str::to_string);
    } else {
        detail.insert("client_id".into(), json!(client_id));
    }
    event.detail = Some(Value::Object(detail).to_string());
    crate::store::audit::insert(conn, &event)?;
    Ok(Withdrawal {
        consent,
        grants,
        revoked,
    })
}
