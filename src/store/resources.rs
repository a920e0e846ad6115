//! Resources: the APIs tokens can be addressed to, with the scopes each defines.

use super::db::Db;
use super::StoreResult;
use crate::args;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: String,
    pub client_id: Option<String>,
    /// (scope name, plain-words description shown on the consent page)
    pub scopes: Vec<(String, String)>,
    pub created_at: i64,
}

impl Resource {
    pub fn to_json(&self) -> serde_json::Value {
        let scopes: serde_json::Map<String, serde_json::Value> = self
            .scopes
            .iter()
            .map(|(n, d)| (n.clone(), serde_json::Value::String(d.clone())))
            .collect();
        serde_json::json!({
            "id": self.id,
            "client_id": self.client_id,
            "scopes": scopes,
            "created_at": self.created_at,
        })
    }
}

pub fn insert(conn: &dyn Db, r: &Resource) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO resources (id, client_id, created_at) VALUES (?1, ?2, ?3)",
        args![&r.id, &r.client_id, r.created_at],
    )?;
    for (name, desc) in &r.scopes {
        conn.execute(
            "INSERT INTO resource_scopes (resource_id, name, description) VALUES (?1, ?2, ?3)",
            args![&r.id, name, desc],
        )?;
    }
    Ok(())
}

fn pairs(conn: &dyn Db, sql: &str, arg: &str) -> StoreResult<Vec<(String, String)>> {
    conn.query(sql, args![arg])?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect()
}

fn strings(conn: &dyn Db, sql: &str, args: &[super::Value]) -> StoreResult<Vec<String>> {
    conn.query(sql, args)?.iter().map(|r| r.get(0)).collect()
}

fn scopes_of(conn: &dyn Db, id: &str) -> StoreResult<Vec<(String, String)>> {
    pairs(
        conn,
        "SELECT name, description FROM resource_scopes WHERE resource_id = ?1 ORDER BY name",
        id,
    )
}

pub fn get(conn: &dyn Db, id: &str) -> StoreResult<Option<Resource>> {
    let Some(row) = conn.query_one(
        "SELECT id, client_id, created_at FROM resources WHERE id = ?1",
        args![id],
    )?
    else {
        return Ok(None);
    };
    let id: String = row.get(0)?;
    Ok(Some(Resource {
        scopes: scopes_of(conn, &id)?,
        client_id: row.get(1)?,
        created_at: row.get(2)?,
        id,
    }))
}

pub fn list(conn: &dyn Db) -> StoreResult<Vec<Resource>> {
    let ids = strings(conn, "SELECT id FROM resources ORDER BY id", &[])?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(r) = get(conn, &id)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The resources that count as "this client" for audience checks.
pub fn ids_for_client(conn: &dyn Db, client_id: &str) -> StoreResult<Vec<String>> {
    strings(
        conn,
        "SELECT id FROM resources WHERE client_id = ?1",
        args![client_id],
    )
}

pub fn remove(conn: &dyn Db, id: &str) -> StoreResult<bool> {
    Ok(conn.execute("DELETE FROM resources WHERE id = ?1", args![id])? > 0)
}

/// Unlink a client from the resources it is (before it is removed; the
/// foreign key would clear the link too). Returns how many were linked.
pub fn unlink_client(conn: &dyn Db, client_id: &str) -> StoreResult<usize> {
    conn.execute(
        "UPDATE resources SET client_id = NULL WHERE client_id = ?1",
        args![client_id],
    )
}

/// Every scope's description, those of `resource` first (the consent page
/// describes each requested scope in the words of the API it is for).
pub fn scope_descriptions(conn: &dyn Db, resource: &str) -> StoreResult<Vec<(String, String)>> {
    pairs(
        conn,
        "SELECT name, description FROM resource_scopes ORDER BY resource_id = ?1 DESC, name",
        resource,
    )
}
