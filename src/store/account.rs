//! SQL for a person's account page: what each client holds for them
//! (remembered consent, live refresh families, live delegation tokens and the
//! chains that hang from a client's access), and their own audit trail.
//! Nothing here returns a token value or a refresh token hash.

use super::db::Db;
use super::tokens::{self, TokenRecord};
use super::StoreResult;
use crate::args;

/// Most rows of one kind the page reads, so one person's page stays cheap.
pub const MAX_ROWS: i64 = 200;

/// One scope a person allowed a client at one resource (RFC 8707 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    pub client_id: String,
    pub resource: String,
    pub scope: String,
    pub granted_at: i64,
}

pub fn consents(conn: &dyn Db, person: &str) -> StoreResult<Vec<ConsentRow>> {
    conn.query(
        "SELECT client_id, resource, scope, granted_at FROM consent_scopes \
         WHERE user_id = ?1 ORDER BY client_id, resource, scope LIMIT ?2",
        args![person, MAX_ROWS],
    )?
    .iter()
    .map(|r| {
        Ok(ConsentRow {
            client_id: r.get(0)?,
            resource: r.get(1)?,
            scope: r.get(2)?,
            granted_at: r.get(3)?,
        })
    })
    .collect()
}

/// A live refresh family (= a grant, RFC 9700 §4.14.2), as its current
/// refresh token describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRow {
    pub family_id: String,
    pub client_id: String,
    pub scope: String,
    pub resource: String,
    /// When the family's first refresh token was issued (the sign-in).
    pub started_at: i64,
    /// When the current refresh token was issued: the family's last use.
    pub last_used_at: i64,
    /// When the current refresh token stops working unless used.
    pub expires_at: i64,
    /// The task the family was issued for (CIBA), if any.
    pub task: Option<String>,
}

/// Families whose current refresh token is usable at `now` and whose grant
/// is not revoked (`RefreshRecord::is_usable`, read as SQL).
pub fn live_families(conn: &dyn Db, person: &str, now: i64) -> StoreResult<Vec<FamilyRow>> {
    conn.query(
        "SELECT r.family_id, r.client_id, r.scope, r.resource, \
           (SELECT MIN(f.issued_at) FROM refresh_tokens f WHERE f.family_id = r.family_id), \
           r.issued_at, \
           CASE WHEN r.idle_expires_at < r.absolute_expires_at \
                THEN r.idle_expires_at ELSE r.absolute_expires_at END, \
           r.task \
         FROM refresh_tokens r \
         WHERE r.user_id = ?1 AND r.consumed_at IS NULL AND r.revoked_at IS NULL \
           AND r.idle_expires_at > ?2 AND r.absolute_expires_at > ?2 \
           AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = r.family_id AND g.revoked_at IS NOT NULL) \
         ORDER BY r.client_id, r.issued_at DESC, r.family_id LIMIT ?3",
        args![person, now, MAX_ROWS],
    )?
    .iter()
    .map(|r| {
        Ok(FamilyRow {
            family_id: r.get(0)?,
            client_id: r.get(1)?,
            scope: r.get(2)?,
            resource: r.get(3)?,
            started_at: r.get(4)?,
            last_used_at: r.get(5)?,
            expires_at: r.get(6)?,
            task: r.get(7)?,
        })
    })
    .collect()
}

/// Live tokens issued for the person that carry an `act` chain (RFC 8693
/// §4.1): what agents hold for them, per client in order of issue.
pub fn live_delegations(conn: &dyn Db, person: &str, now: i64) -> StoreResult<Vec<TokenRecord>> {
    tokens::records_where(
        conn,
        "",
        "subject = ?1 AND actor_chain IS NOT NULL AND revoked_at IS NULL AND expires_at > ?2",
        "ORDER BY client_id, issued_at, jti LIMIT ?3",
        args![person, now, MAX_ROWS],
    )
}

/// Live access tokens of the person without an `act` chain, per client:
/// (client_id, how many, the last expiry).
pub fn live_direct_access(
    conn: &dyn Db,
    person: &str,
    now: i64,
) -> StoreResult<Vec<(String, i64, i64)>> {
    conn.query(
        "SELECT client_id, count(*), MAX(expires_at) FROM tokens \
         WHERE subject = ?1 AND kind = 'access' AND actor_chain IS NULL \
           AND revoked_at IS NULL AND expires_at > ?2 \
         GROUP BY client_id ORDER BY client_id LIMIT ?3",
        args![person, now, MAX_ROWS],
    )?
    .iter()
    .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    .collect()
}

/// Live delegation tokens held by other clients that derive (at any depth,
/// through either parent) from what `client_id` holds for the person: the
/// chains that end when the person withdraws that client.
pub fn chains_from(
    conn: &dyn Db,
    person: &str,
    client_id: &str,
    now: i64,
) -> StoreResult<Vec<TokenRecord>> {
    tokens::records_where(
        conn,
        &tokens::tree("client_id = ?1 AND subject = ?2"),
        "jti IN (SELECT jti FROM tree) AND client_id <> ?1 AND actor_chain IS NOT NULL \
         AND revoked_at IS NULL AND expires_at > ?3",
        "ORDER BY issued_at, jti LIMIT ?4",
        args![client_id, person, now, MAX_ROWS],
    )
}
