//! Signing-key rows (PostgreSQL deployments keep their keys in the
//! database). This module only stores and reads rows; sealing and opening
//! the private key is `keys::db`'s business, so no private key in clear
//! ever passes through here.

use super::db::Db;
use super::StoreResult;
use crate::args;

/// One stored key: public parts in clear, the private key sealed.
#[derive(Clone)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub serial: i64,
    pub created_at: i64,
    pub activates_at: i64,
    pub public_pem: String,
    pub x: String,
    pub y: String,
    pub sealed_private_key: Vec<u8>,
}

pub fn insert(db: &dyn Db, k: &SigningKeyRow) -> StoreResult<()> {
    db.execute(
        "INSERT INTO signing_keys (kid, alg, serial, created_at, activates_at, public_pem, x, y, \
         sealed_private_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        args![
            &k.kid,
            &k.alg,
            k.serial,
            k.created_at,
            k.activates_at,
            &k.public_pem,
            &k.x,
            &k.y,
            k.sealed_private_key.as_slice()
        ],
    )?;
    Ok(())
}

pub fn count(db: &dyn Db) -> StoreResult<i64> {
    db.scalar("SELECT count(*) FROM signing_keys", &[])
}

/// The `kid`s, sorted (a cheap "did anything change").
pub fn kids(db: &dyn Db) -> StoreResult<Vec<String>> {
    db.query("SELECT kid FROM signing_keys ORDER BY kid", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect()
}

pub fn all(db: &dyn Db) -> StoreResult<Vec<SigningKeyRow>> {
    db.query(
        "SELECT kid, alg, serial, created_at, activates_at, public_pem, x, y, sealed_private_key \
         FROM signing_keys ORDER BY kid",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(SigningKeyRow {
            kid: r.get(0)?,
            alg: r.get(1)?,
            serial: r.get(2)?,
            created_at: r.get(3)?,
            activates_at: r.get(4)?,
            public_pem: r.get(5)?,
            x: r.get(6)?,
            y: r.get(7)?,
            sealed_private_key: r.get(8)?,
        })
    })
    .collect()
}
