//! Refresh tokens: opaque, stored by SHA-256, one family per grant.

use super::db::{Db, Row};
use super::StoreResult;
use crate::args;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub jti: String,
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub resource: String,
    pub auth_time: i64,
    pub amr: String,
    pub issued_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub consumed_at: Option<i64>,
    pub consumed_by: Option<String>,
    pub successor_hash: Option<String>,
    pub revoked_at: Option<i64>,
    /// The login session the family started in (the ID token's `sid`).
    pub sid: Option<String>,
    /// RFC 9449 §5: a public client's family is bound to the DPoP key of the
    /// proof it was issued with; every refresh must prove that key.
    pub dpop_jkt: Option<String>,
    /// The task the family was issued for (CIBA), carried into every access
    /// token refreshed from it.
    pub task: Option<String>,
}

const COLUMNS: &str = "token_hash, jti, family_id, client_id, user_id, scope, resource, auth_time, amr, \
    issued_at, idle_expires_at, absolute_expires_at, consumed_at, consumed_by, successor_hash, revoked_at, sid, dpop_jkt, \
    task";

fn from_row(r: &Row) -> StoreResult<RefreshRecord> {
    Ok(RefreshRecord {
        token_hash: r.get(0)?,
        jti: r.get(1)?,
        family_id: r.get(2)?,
        client_id: r.get(3)?,
        user_id: r.get(4)?,
        scope: r.get(5)?,
        resource: r.get(6)?,
        auth_time: r.get(7)?,
        amr: r.get(8)?,
        issued_at: r.get(9)?,
        idle_expires_at: r.get(10)?,
        absolute_expires_at: r.get(11)?,
        consumed_at: r.get(12)?,
        consumed_by: r.get(13)?,
        successor_hash: r.get(14)?,
        revoked_at: r.get(15)?,
        sid: r.get(16)?,
        dpop_jkt: r.get(17)?,
        task: r.get(18)?,
    })
}

pub fn insert(conn: &dyn Db, t: &RefreshRecord) -> StoreResult<()> {
    conn.defer(
        &format!(
            "INSERT INTO refresh_tokens ({COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        ),
        args![
            &t.token_hash,
            &t.jti,
            &t.family_id,
            &t.client_id,
            &t.user_id,
            &t.scope,
            &t.resource,
            t.auth_time,
            &t.amr,
            t.issued_at,
            t.idle_expires_at,
            t.absolute_expires_at,
            t.consumed_at,
            &t.consumed_by,
            &t.successor_hash,
            t.revoked_at,
            &t.sid,
            &t.dpop_jkt,
            &t.task
        ],
    )?;
    Ok(())
}

pub fn get(conn: &dyn Db, token_hash: &str) -> StoreResult<Option<RefreshRecord>> {
    conn.query_one(
        &format!("SELECT {COLUMNS} FROM refresh_tokens WHERE token_hash = ?1"),
        args![token_hash],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Consume a refresh token: one statement, so of N concurrent presentations
/// exactly one rotates. Records which client consumed it and its successor,
/// and ends its token record (reason `rotated`) so the admin views and
/// filters show it as no longer usable, as introspection does.
pub fn consume(
    conn: &dyn Db,
    token_hash: &str,
    now: i64,
    client_id: &str,
    successor_hash: &str,
) -> StoreResult<bool> {
    let won = conn.execute(
        "UPDATE refresh_tokens SET consumed_at = ?2, consumed_by = ?3, successor_hash = ?4 \
         WHERE token_hash = ?1 AND consumed_at IS NULL AND revoked_at IS NULL",
        args![token_hash, now, client_id, successor_hash],
    )? == 1;
    if won {
        conn.defer(
            "UPDATE tokens SET revoked_at = ?2, revoked_reason = 'rotated' \
             WHERE jti = (SELECT jti FROM refresh_tokens WHERE token_hash = ?1) \
             AND revoked_at IS NULL",
            args![token_hash, now],
        )?;
    }
    Ok(won)
}

/// What revoking a family changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FamilyRevoked {
    /// Refresh tokens of the family that were still usable.
    pub refresh_tokens: usize,
    /// Token records (of any kind, descendants included) that changed state.
    pub tokens: usize,
}

impl FamilyRevoked {
    pub fn changed_anything(&self) -> bool {
        self.refresh_tokens > 0 || self.tokens > 0
    }
}

/// Revoke a family (= a grant, RFC 9700 §4.14.2): its refresh tokens, the
/// grant itself, and every token issued under it with their descendants.
/// The one definition, for reuse detection, a replayed code, a client's
/// revocation and an administrator's.
pub fn revoke_family(
    conn: &dyn Db,
    family_id: &str,
    now: i64,
    reason: &str,
) -> StoreResult<FamilyRevoked> {
    let refresh_tokens = conn.execute(
        "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        args![family_id, now],
    )?;
    let tokens = super::tokens::revoke_grant(conn, family_id, now, reason)?;
    Ok(FamilyRevoked {
        refresh_tokens,
        tokens,
    })
}

impl RefreshRecord {
    /// Not consumed, not revoked, within both of its lifetimes. Whether its
    /// family still hangs from a live grant, person and client is
    /// `liveness::family_live`.
    pub fn is_usable(&self, now: i64) -> bool {
        self.consumed_at.is_none()
            && self.revoked_at.is_none()
            && now < self.idle_expires_at
            && now < self.absolute_expires_at
    }
}

/// A named server secret, created on first use (inside the caller's
/// transaction); whoever creates it first wins, so every instance shares it.
pub fn server_secret(conn: &dyn Db, name: &str) -> StoreResult<String> {
    let existing = conn.query_one(
        "SELECT value FROM server_secrets WHERE name = ?1",
        args![name],
    )?;
    if let Some(r) = existing {
        return r.get(0);
    }
    let value = crate::secret::random_token(32);
    conn.execute(
        "INSERT INTO server_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        args![name, value],
    )?;
    conn.scalar(
        "SELECT value FROM server_secrets WHERE name = ?1",
        args![name],
    )
}
