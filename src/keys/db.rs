//! Signing keys in the database (PostgreSQL deployments: no shared file
//! system needed). The private key is stored sealed (`sealed.rs`); every
//! instance reads the same rows, so all publish the same JWKS and sign with
//! the same active keys.

use super::file::StoredKey;
use super::file::{check_private_pem, new_key, new_rsa_key, Generation, KeyMeta, PublicParts};
use super::rsa;
use super::sealed::Kek;
use crate::store::signing_keys::{self, SigningKeyRow};
use crate::store::{Db, StoreError, StoreResult};

fn store_err(e: String) -> StoreError {
    StoreError::Schema(e)
}

fn insert_key(db: &dyn Db, kek: &Kek, key: &StoredKey) -> StoreResult<()> {
    let serial = i64::try_from(key.meta.serial).unwrap_or(i64::MAX);
    insert_stored(db, kek, key, serial)
}

/// Store one key with `serial`, its private key sealed under the KEK (bound
/// to its kid): a private key is never written to the database in clear.
pub fn insert_stored(db: &dyn Db, kek: &Kek, key: &StoredKey, serial: i64) -> StoreResult<()> {
    let sealed = kek
        .seal(key.private_pem.as_bytes(), &key.meta.kid)
        .map_err(store_err)?;
    let (x, y, n, e) = match &key.public {
        PublicParts::Ec { x, y } => (Some(x.clone()), Some(y.clone()), None, None),
        PublicParts::Rsa { n, e } => (None, None, Some(n.clone()), Some(e.clone())),
    };
    signing_keys::insert(
        db,
        &SigningKeyRow {
            kid: key.meta.kid.clone(),
            alg: key.meta.alg.clone(),
            serial,
            created_at: key.meta.created_at,
            activates_at: key.meta.activates_at,
            public_pem: key.public_pem.clone(),
            x,
            y,
            sealed_private_key: sealed,
            n,
            e,
            ec_kid: key.meta.ec_kid.clone(),
        },
    )
}

/// Add a key generation signing from `activates_at`, with `rsa_pem` as its
/// RSA key (generate it before the transaction: that takes up to a second).
pub fn insert_generation(
    db: &dyn Db,
    kek: &Kek,
    now: i64,
    activates_at: i64,
    rsa_pem: String,
) -> StoreResult<Generation> {
    let ec = new_key(now, activates_at).map_err(store_err)?;
    let rsa = new_rsa_key(now, &ec.meta, rsa_pem).map_err(store_err)?;
    insert_key(db, kek, &ec)?;
    insert_key(db, kek, &rsa)?;
    Ok(Generation {
        ec: ec.meta,
        rsa: rsa.meta,
    })
}

/// Add a new key generation, signing from `activates_at`.
pub fn insert_new(db: &dyn Db, kek: &Kek, now: i64, activates_at: i64) -> StoreResult<Generation> {
    let pem = rsa::new_private_pem(&kids(db)?).map_err(store_err)?;
    insert_generation(db, kek, now, activates_at, pem)
}

fn metas(db: &dyn Db) -> StoreResult<Vec<KeyMeta>> {
    Ok(signing_keys::all(db)?.into_iter().map(meta_of).collect())
}

fn meta_of(row: SigningKeyRow) -> KeyMeta {
    KeyMeta {
        kid: row.kid,
        alg: row.alg,
        created_at: row.created_at,
        activates_at: row.activates_at,
        serial: u128::try_from(row.serial).unwrap_or(0),
        ec_kid: row.ec_kid,
    }
}

/// How many RSA keys `ensure` would create now, and the kids in use: lets
/// the caller generate them before its transaction.
pub fn rsa_keys_needed(db: &dyn Db, now: i64) -> StoreResult<(usize, Vec<String>)> {
    let metas = metas(db)?;
    let refs: Vec<&KeyMeta> = metas.iter().collect();
    let needed = if metas.iter().any(|m| !m.is_rsa()) {
        super::lacking_rsa(&refs, now).len()
    } else {
        1
    };
    Ok((needed, metas.into_iter().map(|m| m.kid).collect()))
}

/// A private key from `spare` whose kid is not in use, or a new one.
fn rsa_pem(spare: &mut Vec<String>, in_use: &[String]) -> StoreResult<String> {
    while let Some(pem) = spare.pop() {
        match rsa::inspect(&pem) {
            Ok((kid, _)) if !in_use.contains(&kid) => return Ok(pem),
            _ => continue,
        }
    }
    rsa::new_private_pem(in_use).map_err(store_err)
}

/// The first key generation when there is no P-256 key yet, and an RSA key
/// for each P-256 key that signs now or will and has none (a deployment
/// from before RSA keys). `spare`: RSA private keys generated beforehand.
/// Run in a serializable transaction: of several instances starting at
/// once, exactly one creates them; the others conflict (each read the rows
/// another wrote), run again and find them. The unique `ec_kid` index
/// refuses a second RSA key for one generation even so.
pub fn ensure(db: &dyn Db, kek: &Kek, now: i64, spare: &mut Vec<String>) -> StoreResult<bool> {
    let metas = metas(db)?;
    let mut in_use: Vec<String> = metas.iter().map(|m| m.kid.clone()).collect();
    if !metas.iter().any(|m| !m.is_rsa()) {
        let pem = rsa_pem(spare, &in_use)?;
        insert_generation(db, kek, now, now, pem)?;
        return Ok(true);
    }
    let refs: Vec<&KeyMeta> = metas.iter().collect();
    let lacking = super::lacking_rsa(&refs, now);
    for ec in &lacking {
        let key = new_rsa_key(now, ec, rsa_pem(spare, &in_use)?).map_err(store_err)?;
        insert_key(db, kek, &key)?;
        in_use.push(key.meta.kid);
    }
    Ok(!lacking.is_empty())
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
        let private = kek
            .open(&row.sealed_private_key, &row.kid)
            .map_err(store_err)?;
        let private_pem = String::from_utf8(private)
            .map_err(|_not_utf8| store_err(format!("signing key {} is not PEM text", row.kid)))?;
        let (public, public_pem) =
            check_private_pem(&row.kid, &row.alg, &private_pem).map_err(store_err)?;
        let meta = meta_of(row);
        if meta.is_rsa() && meta.ec_kid.is_none() {
            return Err(store_err(format!(
                "signing key {}: an RSA key names no P-256 key",
                meta.kid
            )));
        }
        out.push(StoredKey {
            meta,
            private_pem,
            public_pem,
            public,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn an_rsa_key_seals_and_opens_to_the_same_key() {
        let kek =
            Kek::from_base64(&base64::engine::general_purpose::STANDARD.encode([7u8; 32])).unwrap();
        let ec = new_key(10, 10).unwrap();
        let key = new_rsa_key(10, &ec.meta, rsa::test_key()).unwrap();
        let sealed = kek.seal(key.private_pem.as_bytes(), &key.meta.kid).unwrap();
        assert!(!sealed
            .windows(20)
            .any(|w| key.private_pem.as_bytes().starts_with(w)));
        let opened = String::from_utf8(kek.open(&sealed, &key.meta.kid).unwrap()).unwrap();
        assert_eq!(opened, key.private_pem);
        let (public, public_pem) = check_private_pem(&key.meta.kid, "RS256", &opened).unwrap();
        assert_eq!(public, key.public);
        assert_eq!(public_pem, key.public_pem);
        // Sealed under its own kid: it does not open as the P-256 key's row.
        assert!(kek.open(&sealed, &ec.meta.kid).is_err());
    }
}
