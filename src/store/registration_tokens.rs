//! Initial access tokens for dynamic client registration (RFC 7591 §3),
//! stored by SHA-256 only. A use is spent by one statement, so of N
//! concurrent registrations with a token that has one use left exactly one
//! succeeds.

use super::db::Db;
use super::StoreResult;
use crate::args;

pub struct RegistrationToken {
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub max_uses: Option<i64>,
}

pub fn insert(conn: &dyn Db, t: &RegistrationToken) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO registration_tokens (token_hash, created_at, expires_at, max_uses, uses) \
         VALUES (?1, ?2, ?3, ?4, 0)",
        args![&t.token_hash, t.created_at, t.expires_at, t.max_uses],
    )?;
    Ok(())
}

/// Spend one use of the token with this hash, if it is live and has a use
/// left. Returns false otherwise (unknown, expired, used up).
pub fn spend(conn: &dyn Db, token_hash: &str, now: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE registration_tokens SET uses = uses + 1 WHERE token_hash = ?1 \
         AND (expires_at IS NULL OR expires_at > ?2) AND (max_uses IS NULL OR uses < max_uses)",
        args![token_hash, now],
    )? == 1)
}
