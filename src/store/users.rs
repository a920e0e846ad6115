//! People who sign in.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::StoreResult;

#[derive(Clone)]
pub struct User {
    /// Stable, opaque subject identifier (`sub`).
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub password_hash: String,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl User {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "name": self.name,
            "disabled": self.disabled_at.is_some(),
            "created_at": self.created_at,
        })
    }
}

const COLUMNS: &str = "id, username, email, name, password_hash, disabled_at, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        email: r.get(2)?,
        name: r.get(3)?,
        password_hash: r.get(4)?,
        disabled_at: r.get(5)?,
        created_at: r.get(6)?,
    })
}

pub fn insert(conn: &Connection, u: &User) -> StoreResult<()> {
    conn.execute(
        &format!("INSERT INTO users ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            u.id,
            u.username,
            u.email,
            u.name,
            u.password_hash,
            u.disabled_at,
            u.created_at
        ],
    )?;
    Ok(())
}

pub fn by_username(conn: &Connection, username: &str) -> StoreResult<Option<User>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE username = ?1"))?
        .query_row([username], from_row)
        .optional()?)
}

pub fn by_id(conn: &Connection, id: &str) -> StoreResult<Option<User>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn list(conn: &Connection) -> StoreResult<Vec<User>> {
    Ok(conn
        .prepare(&format!("SELECT {COLUMNS} FROM users ORDER BY username"))?
        .query_map([], from_row)?
        .collect::<Result<_, _>>()?)
}

/// Mark a person disabled. Returns their id, or None if unknown.
pub fn disable(conn: &Connection, username: &str, now: i64) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached(
            "UPDATE users SET disabled_at = COALESCE(disabled_at, ?2) WHERE username = ?1 RETURNING id",
        )?
        .query_row(params![username, now], |r| r.get(0))
        .optional()?)
}
