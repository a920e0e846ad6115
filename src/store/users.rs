//! People who sign in.

use super::db::{Db, Row};
use super::StoreResult;
use crate::args;

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
    /// The operator vouches for `email` (OIDC Core §5.1 `email_verified`);
    /// deputy itself sends no mail.
    pub email_verified: bool,
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
            "email_verified": self.email_verified,
        })
    }
}

const COLUMNS: &str =
    "id, username, email, name, password_hash, disabled_at, created_at, email_verified";

fn from_row(r: &Row) -> StoreResult<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        email: r.get(2)?,
        name: r.get(3)?,
        password_hash: r.get(4)?,
        disabled_at: r.get(5)?,
        created_at: r.get(6)?,
        email_verified: r.get(7)?,
    })
}

pub fn insert(conn: &dyn Db, u: &User) -> StoreResult<()> {
    conn.execute(
        &format!("INSERT INTO users ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        args![
            &u.id,
            &u.username,
            &u.email,
            &u.name,
            &u.password_hash,
            u.disabled_at,
            u.created_at,
            u.email_verified
        ],
    )?;
    Ok(())
}

pub fn by_username(conn: &dyn Db, username: &str) -> StoreResult<Option<User>> {
    conn.query_one(
        &format!("SELECT {COLUMNS} FROM users WHERE username = ?1"),
        args![username],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn by_id(conn: &dyn Db, id: &str) -> StoreResult<Option<User>> {
    conn.query_one(
        &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
        args![id],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn list(conn: &dyn Db) -> StoreResult<Vec<User>> {
    conn.query(
        &format!("SELECT {COLUMNS} FROM users ORDER BY username"),
        &[],
    )?
    .iter()
    .map(from_row)
    .collect()
}

/// Write a person's email, name and verified flag (`deputy user update`).
/// Returns false when the person is unknown.
pub fn set_profile(conn: &dyn Db, u: &User) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE users SET email = ?2, name = ?3, email_verified = ?4 WHERE id = ?1",
        args![&u.id, &u.email, &u.name, u.email_verified],
    )? > 0)
}

/// Mark a person disabled. Returns their id, or None if unknown.
pub fn disable(conn: &dyn Db, username: &str, now: i64) -> StoreResult<Option<String>> {
    conn.query_one(
        "UPDATE users SET disabled_at = COALESCE(disabled_at, ?2) WHERE username = ?1 RETURNING id",
        args![username, now],
    )?
    .map(|r| r.get(0))
    .transpose()
}
