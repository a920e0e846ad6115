//! SQL for the audit trail (append-only; triggers refuse UPDATE and DELETE).

use super::db::{Db, Row};
use super::StoreResult;
use crate::args;
use crate::audit::AuditEvent;

pub fn insert(conn: &dyn Db, e: &AuditEvent) -> StoreResult<()> {
    conn.defer(
        "INSERT INTO audit_events (at, event, mode, outcome, person, client_id, client_kind, \
         actor_chain, audience, scope, task, jti, parent_jti, rule_id, reason, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        args![
            e.at,
            &e.event,
            &e.mode,
            &e.outcome,
            &e.person,
            &e.client_id,
            &e.client_kind,
            &e.actor_chain,
            &e.audience,
            &e.scope,
            &e.task,
            &e.jti,
            &e.parent_jti,
            &e.rule_id,
            &e.reason,
            &e.detail
        ],
    )?;
    Ok(())
}

/// Filters for reading the trail; every field optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub person: Option<String>,
    pub client_id: Option<String>,
    /// Matches any actor named anywhere in the chain.
    pub actor: Option<String>,
    pub task: Option<String>,
    pub event: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: Option<i64>,
}

fn from_row(r: &Row) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: r.get(0)?,
        at: r.get(1)?,
        event: r.get(2)?,
        mode: r.get(3)?,
        outcome: r.get(4)?,
        person: r.get(5)?,
        client_id: r.get(6)?,
        client_kind: r.get(7)?,
        actor_chain: r.get(8)?,
        audience: r.get(9)?,
        scope: r.get(10)?,
        task: r.get(11)?,
        jti: r.get(12)?,
        parent_jti: r.get(13)?,
        rule_id: r.get(14)?,
        reason: r.get(15)?,
        detail: r.get(16)?,
    })
}

pub fn query(conn: &dyn Db, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
    let actor_pattern = q.actor.as_ref().map(|a| {
        // `act` chains are stored as JSON; match the quoted subject exactly.
        let quoted = serde_json::Value::String(a.clone()).to_string();
        // LIKE wildcards in the name are literal characters here.
        let escaped = quoted
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%\"sub\":{escaped}%")
    });
    conn.query(
        "SELECT id, at, event, mode, outcome, person, client_id, client_kind, actor_chain, \
         audience, scope, task, jti, parent_jti, rule_id, reason, detail FROM audit_events \
         WHERE (CAST(?1 AS TEXT) IS NULL OR person = ?1) AND (CAST(?2 AS TEXT) IS NULL OR client_id = ?2) \
         AND (CAST(?3 AS TEXT) IS NULL OR actor_chain LIKE ?3 ESCAPE '\\' OR client_id = ?8) AND (CAST(?4 AS TEXT) IS NULL OR task = ?4) \
         AND (CAST(?5 AS TEXT) IS NULL OR event = ?5) AND (CAST(?6 AS BIGINT) IS NULL OR at >= ?6) AND (CAST(?7 AS BIGINT) IS NULL OR at <= ?7) \
         ORDER BY id LIMIT ?9",
        args![
            &q.person,
            &q.client_id,
            actor_pattern,
            &q.task,
            &q.event,
            q.since,
            q.until,
            &q.actor,
            q.limit.unwrap_or(1000)
        ],
    )?
    .iter()
    .map(from_row)
    .collect()
}

/// A person's own events, newest first: those before event `before` (a
/// cursor: the `id` of the last event on the previous page), at most `limit`.
pub fn of_person(
    conn: &dyn Db,
    person: &str,
    before: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<AuditEvent>> {
    conn.query(
        "SELECT id, at, event, mode, outcome, person, client_id, client_kind, actor_chain, \
         audience, scope, task, jti, parent_jti, rule_id, reason, detail FROM audit_events \
         WHERE person = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR id < ?2) \
         ORDER BY id DESC LIMIT ?3",
        args![person, before, limit],
    )?
    .iter()
    .map(from_row)
    .collect()
}
