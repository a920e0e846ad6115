//! DPoP proofs seen (RFC 9449 §11.1): the one owner of "a proof is accepted
//! once", across restarts and instances.

use super::db::Db;
use super::StoreResult;
use crate::args;

/// The row key of a proof: its key's thumbprint and its `jti`, hashed (a
/// client picks its `jti`s; keying by the key too means nobody can spend
/// another key's `jti` in advance).
fn proof_hash(jkt: &str, jti: &str) -> String {
    crate::secret::sha256_b64(format!("{jkt}:{jti}").as_bytes())
}

/// Record a proof as used until `expires_at`. One statement under a primary
/// key, so of N concurrent presentations exactly one is accepted. A row
/// whose time has passed (not yet purged) is taken over. Returns false for a
/// replay. No error on conflict: on PostgreSQL an error ends the transaction.
pub fn spend_proof(
    conn: &dyn Db,
    jkt: &str,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> StoreResult<bool> {
    Ok(conn.execute(
        "INSERT INTO dpop_proofs (proof_hash, expires_at) VALUES (?1, ?2) \
         ON CONFLICT (proof_hash) DO UPDATE SET expires_at = excluded.expires_at \
         WHERE dpop_proofs.expires_at < ?3",
        args![proof_hash(jkt, jti), expires_at, now],
    )? == 1)
}

/// Forget proofs that could no longer be accepted anyway.
pub fn purge(conn: &dyn Db, now: i64) -> StoreResult<usize> {
    conn.execute("DELETE FROM dpop_proofs WHERE expires_at < ?1", args![now])
}
