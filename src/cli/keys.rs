//! `deputy keys rotate|list`.

use clap::Subcommand;

use super::{change, load_settings, now, open_db, print_json, Cli, CliResult};
use crate::keys::{file, Keys};

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Create a new key: published at once, signing after `key_prepublish` seconds.
    Rotate,
    /// Show each key and its state (pending, active, retired, expired).
    List,
}

pub fn run(cli: &Cli, cmd: &KeysCmd) -> CliResult {
    let settings = load_settings(cli, &[])?;
    crate::config::ensure_writable_dir("keys_dir", &settings.keys_dir)
        .map_err(|e| e.to_string())?;
    let t = now();
    match cmd {
        KeysCmd::Rotate => {
            // Make sure a first key exists, so the new one has a predecessor.
            Keys::open(&settings.keys_dir, t)?;
            let meta = file::generate(&settings.keys_dir, t, t + settings.key_prepublish)?;
            let mut conn = open_db(&settings)?;
            let mut event =
                crate::audit::AuditEvent::new(t, "key_rotated", crate::audit::Mode::Admin);
            event.detail = Some(
                serde_json::json!({"kid": meta.kid, "activates_at": meta.activates_at}).to_string(),
            );
            change(&mut conn, |tx| {
                Ok(Ok(crate::store::audit::insert(tx, &event)?))
            })?;
            print_json(&serde_json::json!({
                "kid": meta.kid,
                "state": "pending",
                "activates_at": meta.activates_at,
            }));
            Ok(())
        }
        KeysCmd::List => {
            let keys = Keys::open(&settings.keys_dir, t)?;
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
                    })
                })
                .collect();
            print_json(&serde_json::Value::Array(list));
            Ok(())
        }
    }
}
