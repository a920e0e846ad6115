//! `deputy keys rotate|list`: in `keys_dir` with SQLite, in the database
//! (sealed under the key-encryption key) with PostgreSQL.

use clap::Subcommand;

use super::{change, load_settings, now, open_db, print_json, Cli, CliResult};
use crate::keys::{file, KeySource, Keys};
use crate::store::Direct;

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Create a new key generation (a P-256 key and an RSA key): published
    /// at once, signing after `key_prepublish` seconds.
    Rotate,
    /// Show each key and its state (pending, active, retired, expired).
    List,
}

/// The keys as the server sees them (creating the first one if needed).
fn open_keys(settings: &crate::config::Settings, db: &Direct, t: i64) -> Result<Keys, String> {
    match db {
        Direct::Sqlite(_) => {
            crate::config::ensure_writable_dir("keys_dir", &settings.keys_dir)
                .map_err(|e| e.to_string())?;
            Keys::open(&settings.keys_dir, t)
        }
        Direct::Postgres(pg) => Keys::open_source(
            KeySource::Database {
                store: pg.clone(),
                kek: crate::app::key_encryption_key(settings)?,
            },
            t,
        )
        .map_err(|e| format!("setting `key_encryption_key_file`: {e}")),
    }
}

pub fn run(cli: &Cli, cmd: &KeysCmd) -> CliResult {
    let settings = load_settings(cli, &[])?;
    let mut conn = open_db(&settings)?;
    let t = now();
    match cmd {
        KeysCmd::Rotate => {
            // Make sure a first key exists, so the new one has a predecessor.
            open_keys(&settings, &conn, t)?;
            let activates_at = t + settings.key_prepublish;
            let meta = match &conn {
                Direct::Sqlite(_) => file::generate(&settings.keys_dir, t, activates_at)?,
                Direct::Postgres(_) => {
                    let kek = crate::app::key_encryption_key(&settings)?;
                    // Generated before the transaction: it takes up to a second.
                    let rsa_pem = crate::keys::rsa::new_private_pem(&[])?;
                    change(&mut conn, |tx| {
                        Ok(Ok(crate::keys::db::insert_generation(
                            tx,
                            &kek,
                            t,
                            activates_at,
                            rsa_pem.clone(),
                        )?))
                    })?
                }
            };
            let mut event =
                crate::audit::AuditEvent::new(t, "key_rotated", crate::audit::Mode::Admin);
            event.detail = Some(
                serde_json::json!({
                    "kid": meta.ec.kid,
                    "rsa_kid": meta.rsa.kid,
                    "activates_at": meta.ec.activates_at,
                })
                .to_string(),
            );
            change(&mut conn, |tx| {
                Ok(Ok(crate::store::audit::insert(tx, &event)?))
            })?;
            print_json(&serde_json::json!({
                "kid": meta.ec.kid,
                "rsa_kid": meta.rsa.kid,
                "state": "pending",
                "activates_at": meta.ec.activates_at,
            }));
            Ok(())
        }
        KeysCmd::List => {
            let keys = open_keys(&settings, &conn, t)?;
            let ring = keys.ring();
            let list: Vec<serde_json::Value> = ring
                .states(t, settings.max_jwt_lifetime())
                .into_iter()
                .map(|(k, s)| {
                    serde_json::json!({
                        "kid": k.meta.kid,
                        "alg": k.meta.alg,
                        "state": s.as_str(),
                        "created_at": k.meta.created_at,
                        "activates_at": k.meta.activates_at,
                        // Creation order: of two keys activating in the
                        // same second, the later one signs.
                        "serial": u64::try_from(k.meta.serial).unwrap_or(u64::MAX),
                    })
                })
                .collect();
            print_json(&serde_json::Value::Array(list));
            Ok(())
        }
    }
}
