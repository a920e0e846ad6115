//! `deputy store copy --from FILE --to URL`: move a stopped SQLite
//! deployment (its database and the keys in `keys_dir`) to an empty
//! PostgreSQL database, in one transaction (see `store::copy`).

use std::path::Path;

use clap::{Args, Subcommand};

use super::{load_settings, print_json, Cli, CliResult};
use crate::store::copy::Source;
use crate::store::postgres::{is_postgres_url, shown_url, PgStore};

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Copy everything of a stopped SQLite deployment (the database and the
    /// signing keys in keys_dir) into an empty PostgreSQL database, in one
    /// transaction; prints the rows copied per table.
    Copy(CopyArgs),
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The SQLite database file (the server using it stopped).
    #[arg(long, value_name = "FILE")]
    pub from: String,
    /// The PostgreSQL database: a postgres:// or postgresql:// URL; migrated,
    /// and every table must be empty.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// The key-encryption key the signing keys are sealed under (setting
    /// `key_encryption_key_file`; required): the one the PostgreSQL
    /// instances will be started with.
    #[arg(long, value_name = "FILE")]
    pub key_encryption_key_file: Option<String>,
}

pub fn run(cli: &Cli, cmd: &StoreCmd) -> CliResult {
    match cmd {
        StoreCmd::Copy(args) => copy(cli, args),
    }
}

fn copy(cli: &Cli, args: &CopyArgs) -> CliResult {
    if args.from.contains("://") {
        let shown = if is_postgres_url(&args.from) {
            shown_url(&args.from)
        } else {
            args.from.clone()
        };
        return Err(format!(
            "--from must be the SQLite database file, not a URL ({shown})"
        ));
    }
    if !is_postgres_url(&args.to) {
        return Err(format!(
            "--to must be a postgres:// or postgresql:// URL, not `{}`",
            args.to
        ));
    }
    let settings = load_settings(
        cli,
        &[(
            "key_encryption_key_file",
            args.key_encryption_key_file.as_deref(),
        )],
    )?;
    if settings.key_encryption_key_file.as_os_str().is_empty() {
        return Err(
            "--key-encryption-key-file (or the setting `key_encryption_key_file`) is required: \
             the signing keys are stored sealed under it, and the PostgreSQL instances start \
             with the same file (32 random bytes, base64: `openssl rand -base64 32`)"
                .to_string(),
        );
    }
    let kek = crate::app::key_encryption_key(&settings)?;

    // The source first: refusing there needs no connection to PostgreSQL.
    let mut source = Source::open(Path::new(&args.from))?;
    let keys = crate::keys::file::load_all(&settings.keys_dir)
        .map_err(|e| format!("setting `keys_dir`: {e}"))?;
    if keys.is_empty() {
        let tokens = source.count("tokens").map_err(|e| e.to_string())?;
        if tokens > 0 {
            return Err(format!(
                "keys_dir {} holds no signing key, but {} has issued {tokens} tokens: name \
                 the server's keys directory with --keys-dir",
                settings.keys_dir.display(),
                args.from
            ));
        }
    }
    let shown = shown_url(&args.to);
    let target = PgStore::open(&args.to).map_err(|e| format!("--to {shown}: {e}"))?;
    let copied = source
        .copy_to(&target, &keys, &kek)
        .map_err(|e| format!("--to {shown}: {e}"))?;
    let tables: serde_json::Map<String, serde_json::Value> = copied
        .tables
        .iter()
        .map(|(t, n)| (t.clone(), serde_json::Value::from(*n)))
        .collect();
    print_json(&serde_json::json!({
        "copied": tables,
        "keys": copied.keys,
        "from": args.from,
        "to": shown,
    }));
    Ok(())
}
