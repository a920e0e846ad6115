//! Delegation rules (RFC 8693 policy). Without a matching rule nothing is issued.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{from_json_list, to_json_list, StoreError, StoreResult};
use crate::policy::delegation::DelegationRule;

const COLUMNS: &str = "id, actor, audience, scopes, max_lifetime, max_depth, broker, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<DelegationRule, StoreError>> {
    let scopes: String = r.get(3)?;
    let scopes = match from_json_list(&scopes) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(DelegationRule {
        id: r.get(0)?,
        actor: r.get(1)?,
        audience: r.get(2)?,
        scopes,
        max_lifetime: r.get(4)?,
        max_depth: r.get(5)?,
        broker: r.get(6)?,
        created_at: r.get(7)?,
    }))
}

pub fn insert(conn: &Connection, rule: &DelegationRule) -> StoreResult<()> {
    conn.execute(
        &format!(
            "INSERT INTO delegation_rules ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![
            rule.id,
            rule.actor,
            rule.audience,
            to_json_list(&rule.scopes),
            rule.max_lifetime,
            rule.max_depth,
            rule.broker,
            rule.created_at
        ],
    )?;
    Ok(())
}

/// A rule by id.
pub fn get(conn: &Connection, id: &str) -> StoreResult<Option<DelegationRule>> {
    match conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM delegation_rules WHERE id = ?1"
        ))?
        .query_row([id], from_row)
        .optional()?
    {
        Some(r) => Ok(Some(r?)),
        None => Ok(None),
    }
}

/// The rule for this actor and target, if any.
pub fn find(conn: &Connection, actor: &str, audience: &str) -> StoreResult<Option<DelegationRule>> {
    match conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM delegation_rules WHERE actor = ?1 AND audience = ?2"
        ))?
        .query_row(params![actor, audience], from_row)
        .optional()?
    {
        Some(r) => Ok(Some(r?)),
        None => Ok(None),
    }
}

pub fn list(conn: &Connection) -> StoreResult<Vec<DelegationRule>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM delegation_rules ORDER BY actor, audience"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

/// Remove a rule by id.
pub fn remove(conn: &Connection, id: &str) -> StoreResult<bool> {
    Ok(conn.execute("DELETE FROM delegation_rules WHERE id = ?1", [id])? > 0)
}

/// Remove every rule that names a client as actor, broker or audience.
pub fn remove_naming(conn: &Connection, client_id: &str) -> StoreResult<usize> {
    Ok(conn.execute(
        "DELETE FROM delegation_rules WHERE actor = ?1 OR broker = ?1 OR audience = ?1",
        [client_id],
    )?)
}
