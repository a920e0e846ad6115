//! Signing-key rows (PostgreSQL deployments keep their keys in the
//! database). This module only stores and reads rows; sealing and opening
//! the private key is `keys::db`'s business, so no private key in clear
//! ever passes through here.

use super::db::Db;
use super::StoreResult;
use crate::args;

/// One stored key: public parts in clear, the private key sealed. A P-256
/// key has `x`, `y`; an RSA key `n`, `e` and `ec_kid`, the P-256 key of its
/// generation.
#[derive(Clone)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub serial: i64,
    pub created_at: i64,
    pub activates_at: i64,
    pub public_pem: String,
    pub x: Option<String>,
    pub y: Option<String>,
    pub sealed_private_key: Vec<u8>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub ec_kid: Option<String>,
}

const COLUMNS: &str =
    "kid, alg, serial, created_at, activates_at, public_pem, x, y, sealed_private_key, n, e, ec_kid";

pub fn insert(db: &dyn Db, k: &SigningKeyRow) -> StoreResult<()> {
    db.execute(
        &format!(
            "INSERT INTO signing_keys ({COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        args![
            &k.kid,
            &k.alg,
            k.serial,
            k.created_at,
            k.activates_at,
            &k.public_pem,
            &k.x,
            &k.y,
            k.sealed_private_key.as_slice(),
            &k.n,
            &k.e,
            &k.ec_kid
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
        &format!("SELECT {COLUMNS} FROM signing_keys ORDER BY kid"),
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
            n: r.get(9)?,
            e: r.get(10)?,
            ec_kid: r.get(11)?,
        })
    })
    .collect()
}
