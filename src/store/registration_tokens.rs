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

/// An initial access token as the operator sees it: its id is the SHA-256
/// the store keeps (never the token itself).
pub struct TokenRow {
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub max_uses: Option<i64>,
    pub uses: i64,
}

impl TokenRow {
    /// Whether a registration could still spend it at `now` (as `spend`).
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| t > now) && self.max_uses.is_none_or(|m| self.uses < m)
    }
}

/// Every initial access token, oldest first.
pub fn list(conn: &dyn Db) -> StoreResult<Vec<TokenRow>> {
    conn.query(
        "SELECT token_hash, created_at, expires_at, max_uses, uses FROM registration_tokens \
         ORDER BY created_at, token_hash",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(TokenRow {
            token_hash: r.get(0)?,
            created_at: r.get(1)?,
            expires_at: r.get(2)?,
            max_uses: r.get(3)?,
            uses: r.get(4)?,
        })
    })
    .collect()
}

/// Forget the token with this hash: no registration can spend it any
/// more. Returns false when there was none.
pub fn remove(conn: &dyn Db, token_hash: &str) -> StoreResult<bool> {
    Ok(conn.execute(
        "DELETE FROM registration_tokens WHERE token_hash = ?1",
        args![token_hash],
    )? == 1)
}
