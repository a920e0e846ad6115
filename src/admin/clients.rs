//! Removing a client, for the CLI and any future API: everything that hangs
//! from it goes with it in the caller's transaction, so a client registered
//! again under the same id inherits nothing.

use crate::store::Db;
use serde_json::json;

use super::{Origin, Selector};
use crate::audit::{AuditEvent, Mode};
use crate::store::StoreResult;

/// What removing a client changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub tokens_revoked: usize,
    pub rules_removed: usize,
    pub resources_unlinked: usize,
    pub consents_withdrawn: usize,
}

/// Remove client `id`; `None` when there is no such client (nothing written).
pub fn remove(conn: &dyn Db, id: &str, origin: &Origin, now: i64) -> StoreResult<Option<Removal>> {
    let Some(existing) = crate::store::clients::get(conn, id)? else {
        return Ok(None);
    };
    // Its tokens, their descendants, its grants and refresh families (the
    // same cascade as `deputy revoke --client`), tokens in which it acts for
    // someone or that are addressed to it (`deputy revoke --actor`: a broker
    // may hold them), with its codes and remembered consents.
    let mut tokens_revoked = 0;
    for sel in [
        Selector::Client(id.to_string()),
        Selector::Actor(id.to_string(), None),
    ] {
        tokens_revoked += super::revoke::revoke(conn, &sel, origin, now)?;
    }
    let consents_withdrawn = crate::store::consents::withdraw_all_for_client(conn, id)?;
    let rules_removed = crate::store::delegation::remove_naming(conn, id)?;
    // The resources it is: a client registered again under this id must not
    // inherit introspection visibility or exchange rights for them.
    let resources_unlinked = crate::store::resources::unlink_client(conn, id)?;
    // Its backchannel requests (CIBA) end too: approved or not, a client
    // registered again under this id redeems none of them.
    let ciba_ended = crate::store::backchannel::end_for_client(conn, id, now)?;
    crate::store::clients::remove(conn, id)?;
    let mut detail = serde_json::Map::new();
    detail.insert("tokens_revoked".into(), json!(tokens_revoked));
    detail.insert("rules_removed".into(), json!(rules_removed));
    detail.insert("resources_unlinked".into(), json!(resources_unlinked));
    if ciba_ended > 0 {
        detail.insert("ciba_requests_ended".into(), json!(ciba_ended));
    }
    let mut event = origin.stamp(
        AuditEvent::new(now, "client_removed", origin.mode()),
        &mut detail,
    );
    if event.client_id.is_none() {
        event.client_id = Some(id.to_string());
        event.client_kind = Some(existing.kind.as_str().to_string());
    } else {
        detail.insert("client_id".into(), json!(id));
    }
    event.detail = Some(serde_json::Value::Object(detail).to_string());
    crate::store::audit::insert(conn, &event)?;
    Ok(Some(Removal {
        tokens_revoked,
        rules_removed,
        resources_unlinked,
        consents_withdrawn,
    }))
}

/// Block client `id` (any registration; a metadata document URL not seen
/// yet is blocked before its first use): from now on it is unknown to every
/// endpoint, and everything it holds is revoked as on removal, in the
/// caller's transaction. The row stays, so the block outlives the client's
/// next metadata document. Returns the tokens revoked, or `None` when it
/// was blocked already.
pub fn block(conn: &dyn Db, id: &str, origin: &Origin, now: i64) -> StoreResult<Option<usize>> {
    if !crate::store::clients::block(conn, id, now)? {
        return Ok(None);
    }
    let mut tokens_revoked = 0;
    for sel in [
        Selector::Client(id.to_string()),
        Selector::Actor(id.to_string(), None),
    ] {
        tokens_revoked += super::revoke::revoke(conn, &sel, origin, now)?;
    }
    crate::store::consents::withdraw_all_for_client(conn, id)?;
    let mut detail = serde_json::Map::new();
    detail.insert("tokens_revoked".into(), json!(tokens_revoked));
    let mut event = origin.stamp(
        AuditEvent::new(now, "client_blocked", Mode::Admin),
        &mut detail,
    );
    if event.client_id.is_none() {
        event.client_id = Some(id.to_string());
    } else {
        detail.insert("client_id".into(), json!(id));
    }
    event.detail = Some(serde_json::Value::Object(detail).to_string());
    crate::store::audit::insert(conn, &event)?;
    Ok(Some(tokens_revoked))
}
