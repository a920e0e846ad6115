//! Authorization codes (RFC 6749 §4.1.2), stored by SHA-256 only.

use super::db::Db;
use super::StoreResult;
use crate::args;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub grant_id: String,
    pub redirect_uri: String,
    pub redirect_uri_sent: bool,
    pub code_challenge: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub resource: String,
    pub auth_time: i64,
    pub amr: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
    /// The login session the code was issued in (the ID token's `sid`).
    pub sid: Option<String>,
    /// Claims the request's `claims` parameter asked for in the ID token
    /// (OIDC Core §5.5), as a JSON list of names.
    pub requested_claims: Option<String>,
    /// RFC 9449 §10: the DPoP key thumbprint the authorization request bound
    /// the code to (`dpop_jkt`); the redemption must prove that key.
    pub dpop_jkt: Option<String>,
}

pub fn insert(conn: &dyn Db, c: &CodeRecord) -> StoreResult<()> {
    conn.defer(
        "INSERT INTO authorization_codes (code_hash, client_id, user_id, grant_id, redirect_uri, \
         redirect_uri_sent, code_challenge, scope, nonce, resource, auth_time, amr, issued_at, expires_at, sid, \
         requested_claims, dpop_jkt) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        args![
            &c.code_hash,
            &c.client_id,
            &c.user_id,
            &c.grant_id,
            &c.redirect_uri,
            c.redirect_uri_sent,
            &c.code_challenge,
            &c.scope,
            &c.nonce,
            &c.resource,
            c.auth_time,
            &c.amr,
            c.issued_at,
            c.expires_at,
            &c.sid,
            &c.requested_claims,
            &c.dpop_jkt
        ],
    )?;
    Ok(())
}

pub fn get(conn: &dyn Db, code_hash: &str) -> StoreResult<Option<CodeRecord>> {
    conn.query_one(
        "SELECT code_hash, client_id, user_id, grant_id, redirect_uri, redirect_uri_sent, \
         code_challenge, scope, nonce, resource, auth_time, amr, issued_at, expires_at, consumed_at, sid, \
         requested_claims, dpop_jkt FROM authorization_codes WHERE code_hash = ?1",
        args![code_hash],
    )?
    .map(|r| {
        Ok(CodeRecord {
            code_hash: r.get(0)?,
            client_id: r.get(1)?,
            user_id: r.get(2)?,
            grant_id: r.get(3)?,
            redirect_uri: r.get(4)?,
            redirect_uri_sent: r.get(5)?,
            code_challenge: r.get(6)?,
            scope: r.get(7)?,
            nonce: r.get(8)?,
            resource: r.get(9)?,
            auth_time: r.get(10)?,
            amr: r.get(11)?,
            issued_at: r.get(12)?,
            expires_at: r.get(13)?,
            consumed_at: r.get(14)?,
            sid: r.get(15)?,
            requested_claims: r.get(16)?,
            dpop_jkt: r.get(17)?,
        })
    })
    .transpose()
}

/// Consume a code: one statement, so of N concurrent redemptions exactly one
/// succeeds. Returns false when it was already consumed (or never existed).
pub fn consume(conn: &dyn Db, code_hash: &str, now: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE authorization_codes SET consumed_at = ?2 WHERE code_hash = ?1 AND consumed_at IS NULL",
        args![code_hash, now],
    )? == 1)
}
