//! Resources: the APIs tokens can be addressed to, with the scopes each defines.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreResult;

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

pub fn insert(conn: &Connection, r: &Resource) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO resources (id, client_id, created_at) VALUES (?1, ?2, ?3)",
        params![r.id, r.client_id, r.created_at],
    )?;
    for (name, desc) in &r.scopes {
        conn.execute(
            "INSERT INTO resource_scopes (resource_id, name, description) VALUES (?1, ?2, ?3)",
            params![r.id, name, desc],
        )?;
    }
    Ok(())
}

fn scopes_of(conn: &Connection, id: &str) -> StoreResult<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, description FROM resource_scopes WHERE resource_id = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn get(conn: &Connection, id: &str) -> StoreResult<Option<Resource>> {
    let row: Option<(String, Option<String>, i64)> = conn
        .prepare_cached("SELECT id, client_id, created_at FROM resources WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    match row {
        None => Ok(None),
        Some((id, client_id, created_at)) => Ok(Some(Resource {
            scopes: scopes_of(conn, &id)?,
            id,
            client_id,
            created_at,
        })),
    }
}

pub fn list(conn: &Connection) -> StoreResult<Vec<Resource>> {
    let ids: Vec<String> = conn
        .prepare("SELECT id FROM resources ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(r) = get(conn, &id)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The resources that count as "this client" for audience checks.
pub fn ids_for_client(conn: &Connection, client_id: &str) -> StoreResult<Vec<String>> {
    Ok(conn
        .prepare_cached("SELECT id FROM resources WHERE client_id = ?1")?
        .query_map([client_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

pub fn remove(conn: &Connection, id: &str) -> StoreResult<bool> {
    Ok(conn.execute("DELETE FROM resources WHERE id = ?1", [id])? > 0)
}

/// Unlink a client from the resources it is (before it is removed; the
/// foreign key would clear the link too). Returns how many were linked.
pub fn unlink_client(conn: &Connection, client_id: &str) -> StoreResult<usize> {
    Ok(conn.execute(
        "UPDATE resources SET client_id = NULL WHERE client_id = ?1",
        [client_id],
    )?)
}

/// Every scope's description, those of `resource` first (the consent page
/// describes each requested scope in the words of the API it is for).
pub fn scope_descriptions(conn: &Connection, resource: &str) -> StoreResult<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, description FROM resource_scopes ORDER BY resource_id = ?1 DESC",
    )?;
    let rows = stmt.query_map([resource], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
