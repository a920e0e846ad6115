//! Signing keys in the database (PostgreSQL deployments: no shared file
//! system needed). The private key is stored sealed (`sealed.rs`); every
//! instance reads the same rows, so all publish the same JWKS and sign with
//! the same active key.

use super::file::{check_private_pem, new_key, KeyMeta, StoredKey};
use super::sealed::Kek;
use crate::args;
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
    let serial = i64::try_from(key.meta.serial).unwrap_or(i64::MAX);
    db.execute(
        "INSERT INTO signing_keys (kid, alg, serial, created_at, activates_at, public_pem, x, y, \
         sealed_private_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        args![
            &key.meta.kid,
            &key.meta.alg,
            serial,
            key.meta.created_at,
            key.meta.activates_at,
            &key.public_pem,
            &key.x,
            &key.y,
            sealed
        ],
    )?;
    Ok(key.meta)
}

/// The first key, when there is none yet. Run in a serializable
/// transaction: of several instances starting at once on an empty
/// database, exactly one creates it (the others lose the race, run again,
/// and find it).
pub fn ensure_first(db: &dyn Db, kek: &Kek, now: i64) -> StoreResult<bool> {
    let n: i64 = db.scalar("SELECT count(*) FROM signing_keys", &[])?;
    if n > 0 {
        return Ok(false);
    }
    insert_new(db, kek, now, now)?;
    Ok(true)
}

/// The `kid`s, sorted (a cheap "did anything change").
pub fn kids(db: &dyn Db) -> StoreResult<Vec<String>> {
    db.query("SELECT kid FROM signing_keys ORDER BY kid", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every key, opened with the KEK. A key that does not open is an error
/// (a wrong KEK never leads to a new key).
pub fn load_all(db: &dyn Db, kek: &Kek) -> StoreResult<Vec<StoredKey>> {
    let rows = db.query(
        "SELECT kid, alg, serial, created_at, activates_at, sealed_private_key FROM signing_keys",
        &[],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let kid: String = r.get(0)?;
        let sealed: Vec<u8> = r.get(5)?;
        let private = kek.open(&sealed, &kid).map_err(store_err)?;
        let private_pem = String::from_utf8(private)
            .map_err(|_not_utf8| store_err(format!("signing key {kid} is not PEM text")))?;
        let (x, y, public_pem) = check_private_pem(&kid, &private_pem).map_err(store_err)?;
        let serial: i64 = r.get(2)?;
        out.push(StoredKey {
            meta: KeyMeta {
                kid,
                alg: r.get(1)?,
                created_at: r.get(3)?,
                activates_at: r.get(4)?,
                serial: u128::try_from(serial).unwrap_or(0),
            },
            private_pem,
            public_pem,
            x,
            y,
        });
    }
    Ok(out)
}
