//! Signing keys in the database (PostgreSQL deployments: no shared file
//! system needed). The private key is stored sealed (`sealed.rs`); every
//! instance reads the same rows, so all publish the same JWKS and sign with
//! the same active key.

use super::file::{check_private_pem, new_key, KeyMeta, StoredKey};
use super::sealed::Kek;
use crate::store::signing_keys::{self, SigningKeyRow};
use crate::store::{Db, StoreError, StoreResult};

fn store_err(e: String) -> StoreError {
    StoreError::Schema(e)
}

/// Add a new key, signing from `activates_at`.
pub fn insert_new(db: &dyn Db, kek: &Kek, now: i64, activates_at: i64) -> StoreResult<KeyMeta> {
    let key = new_key(now, activates_at).map_err(store_err)?;
    let sealed = kek
        .seal(key.private_pem.as_bytes(), &key.meta.kid)
        .map_err(store_err)?;
    signing_keys::insert(
        db,
        &SigningKeyRow {
            kid: key.meta.kid.clone(),
            alg: key.meta.alg.clone(),
            serial: i64::try_from(key.meta.serial).unwrap_or(i64::MAX),
            created_at: key.meta.created_at,
            activates_at: key.meta.activates_at,
            public_pem: key.public_pem.clone(),
            x: key.x.clone(),
            y: key.y.clone(),
            sealed_private_key: sealed,
        },
    )?;
    Ok(key.meta)
}

/// The first key, when there is none yet. Run in a serializable
/// transaction: of several instances starting at once on an empty
/// database, exactly one creates it (the others lose the race, run again,
/// and find it).
pub fn ensure_first(db: &dyn Db, kek: &Kek, now: i64) -> StoreResult<bool> {
    if signing_keys::count(db)? > 0 {
        return Ok(false);
    }
    insert_new(db, kek, now, now)?;
    Ok(true)
}

/// The `kid`s, sorted (a cheap "did anything change").
pub fn kids(db: &dyn Db) -> StoreResult<Vec<String>> {
    signing_keys::kids(db)
}

/// Every key, opened with the KEK. A key that does not open is an error
/// (a wrong KEK never leads to a new key).
pub fn load_all(db: &dyn Db, kek: &Kek) -> StoreResult<Vec<StoredKey>> {
    let rows = signing_keys::all(db)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let kid = row.kid;
        let private = kek.open(&row.sealed_private_key, &kid).map_err(store_err)?;
        let private_pem = String::from_utf8(private)
            .map_err(|_not_utf8| store_err(format!("signing key {kid} is not PEM text")))?;
        let (x, y, public_pem) = check_private_pem(&kid, &private_pem).map_err(store_err)?;
        out.push(StoredKey {
            meta: KeyMeta {
                kid,
                alg: row.alg,
                created_at: row.created_at,
                activates_at: row.activates_at,
                serial: u128::try_from(row.serial).unwrap_or(0),
            },
            private_pem,
            public_pem,
            x,
            y,
        });
    }
    Ok(out)
}
