//! Delegation rules (RFC 8693 policy). Without a matching rule nothing is issued.

use super::db::{Db, Row};
use super::{from_json_list, to_json_list, StoreResult};
use crate::args;
use crate::policy::delegation::DelegationRule;

const COLUMNS: &str =
    "id, actor, audience, scopes, max_lifetime, max_depth, broker, created_at, require_dpop";

fn from_row(r: &Row) -> StoreResult<DelegationRule> {
    let scopes = from_json_list(&r.get::<String>(3)?)?;
    Ok(DelegationRule {
        id: r.get(0)?,
        actor: r.get(1)?,
        audience: r.get(2)?,
        scopes,
        max_lifetime: r.get(4)?,
        max_depth: r.get(5)?,
        broker: r.get(6)?,
        created_at: r.get(7)?,
        require_dpop: r.get(8)?,
    })
}

pub fn insert(conn: &dyn Db, rule: &DelegationRule) -> StoreResult<()> {
    conn.execute(
        &format!(
            "INSERT INTO delegation_rules ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        args![
            &rule.id,
            &rule.actor,
            &rule.audience,
            to_json_list(&rule.scopes),
            rule.max_lifetime,
            rule.max_depth,
            &rule.broker,
            rule.created_at,
            rule.require_dpop
        ],
    )?;
    Ok(())
}

/// A rule by id.
pub fn get(conn: &dyn Db, id: &str) -> StoreResult<Option<DelegationRule>> {
    conn.query_one(
        &format!("SELECT {COLUMNS} FROM delegation_rules WHERE id = ?1"),
        args![id],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// The rule for this actor and target, if any.
pub fn find(conn: &dyn Db, actor: &str, audience: &str) -> StoreResult<Option<DelegationRule>> {
    conn.query_one(
        &format!("SELECT {COLUMNS} FROM delegation_rules WHERE actor = ?1 AND audience = ?2"),
        args![actor, audience],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn list(conn: &dyn Db) -> StoreResult<Vec<DelegationRule>> {
    conn.query(
        &format!("SELECT {COLUMNS} FROM delegation_rules ORDER BY actor, audience"),
        &[],
    )?
    .iter()
    .map(from_row)
    .collect()
}

/// Remove a rule by id.
pub fn remove(conn: &dyn Db, id: &str) -> StoreResult<bool> {
    Ok(conn.execute("DELETE FROM delegation_rules WHERE id = ?1", args![id])? > 0)
}

/// Remove every rule that names a client as actor, broker or audience.
pub fn remove_naming(conn: &dyn Db, client_id: &str) -> StoreResult<usize> {
    conn.execute(
        "DELETE FROM delegation_rules WHERE actor = ?1 OR broker = ?1 OR audience = ?1",
        args![client_id],
    )
}
