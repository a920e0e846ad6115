//! Login sessions and pending interactions.

use super::db::Db;
use super::StoreResult;
use crate::args;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub auth_time: i64,
    pub amr: String,
    pub expires_at: i64,
}

pub fn insert_session(conn: &dyn Db, id_hash: &str, s: &Session, now: i64) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO sessions (id_hash, user_id, auth_time, amr, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![id_hash, &s.user_id, s.auth_time, &s.amr, now, s.expires_at],
    )?;
    Ok(())
}

pub fn get_session(conn: &dyn Db, id_hash: &str) -> StoreResult<Option<Session>> {
    conn.query_one(
        "SELECT user_id, auth_time, amr, expires_at FROM sessions WHERE id_hash = ?1",
        args![id_hash],
    )?
    .map(|r| {
        Ok(Session {
            user_id: r.get(0)?,
            auth_time: r.get(1)?,
            amr: r.get(2)?,
            expires_at: r.get(3)?,
        })
    })
    .transpose()
}

pub fn delete_session(conn: &dyn Db, id_hash: &str) -> StoreResult<bool> {
    Ok(conn.execute("DELETE FROM sessions WHERE id_hash = ?1", args![id_hash])? > 0)
}

#[derive(Clone, PartialEq, Eq)]
pub struct Interaction {
    pub id: String,
    pub browser_hash: String,
    pub csrf: String,
    pub request: String,
    pub login_done: bool,
    pub expires_at: i64,
}

impl std::fmt::Debug for Interaction {
    /// The CSRF token is a secret of the browser's: its length only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interaction")
            .field("id", &self.id)
            .field("browser_hash", &self.browser_hash)
            .field("csrf", &crate::secret::Redacted(&self.csrf))
            .field("request", &self.request)
            .field("login_done", &self.login_done)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

pub fn insert_interaction(conn: &dyn Db, i: &Interaction, now: i64) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO interactions (id, browser_hash, csrf, request, login_done, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![
            &i.id,
            &i.browser_hash,
            &i.csrf,
            &i.request,
            i.login_done,
            now,
            i.expires_at
        ],
    )?;
    Ok(())
}

pub fn get_interaction(conn: &dyn Db, id: &str) -> StoreResult<Option<Interaction>> {
    conn.query_one(
        "SELECT id, browser_hash, csrf, request, login_done, expires_at FROM interactions WHERE id = ?1",
        args![id],
    )?
    .map(|r| {
        Ok(Interaction {
            id: r.get(0)?,
            browser_hash: r.get(1)?,
            csrf: r.get(2)?,
            request: r.get(3)?,
            login_done: r.get(4)?,
            expires_at: r.get(5)?,
        })
    })
    .transpose()
}

pub fn mark_login_done(conn: &dyn Db, id: &str) -> StoreResult<()> {
    conn.execute(
        "UPDATE interactions SET login_done = ?2 WHERE id = ?1",
        args![id, true],
    )?;
    Ok(())
}

/// Finish an interaction: one DELETE, so a form submitted twice completes once.
pub fn take_interaction(conn: &dyn Db, id: &str) -> StoreResult<bool> {
    Ok(conn.execute("DELETE FROM interactions WHERE id = ?1", args![id])? > 0)
}

pub fn purge_expired(conn: &dyn Db, now: i64) -> StoreResult<()> {
    conn.execute("DELETE FROM interactions WHERE expires_at < ?1", args![now])?;
    conn.execute("DELETE FROM sessions WHERE expires_at < ?1", args![now])?;
    Ok(())
}

/// End every login session of a person. Returns how many there were.
pub fn delete_sessions_of(conn: &dyn Db, user_id: &str) -> StoreResult<usize> {
    conn.execute("DELETE FROM sessions WHERE user_id = ?1", args![user_id])
}
