//! The `deputy` command line: `serve`, `migrate` and the management commands.
//! Every command prints JSON on success, or one `deputy: error: ...` line and
//! exits non-zero; nothing is half-written (each change is one transaction).

mod admin;
mod client;
mod delegation;
mod keys;
mod registration;
mod resource;
mod serve;
mod store;
mod user;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Settings;

#[derive(Parser, Debug)]
#[command(
    name = "deputy",
    version,
    about = "OAuth 2.0 / OpenID Connect authorization server for people, services and agents"
)]
pub struct Cli {
    /// Settings file (TOML); also DEPUTY_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// SQLite database file, or a postgres:// / postgresql:// URL (setting `database`).
    #[arg(long, global = true, value_name = "PATH|URL")]
    pub database: Option<String>,
    /// Signing key directory (setting `keys_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub keys_dir: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server.
    Serve(serve::ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage clients (apps, services, agents).
    #[command(subcommand)]
    Client(client::ClientCmd),
    /// Manage resources (the APIs tokens are addressed to).
    #[command(subcommand)]
    Resource(resource::ResourceCmd),
    /// Manage people.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// Manage delegation rules (who may exchange tokens for which target).
    #[command(subcommand)]
    Delegation(delegation::DelegationCmd),
    /// Revoke, trace, audit and consent withdrawal (`revoke`, `trace`, `audit`, `consent`).
    #[command(flatten)]
    Admin(admin::AdminCmd),
    /// Move a deployment between databases (`store copy`).
    #[command(subcommand)]
    Store(store::StoreCmd),
    /// Dynamic client registration (`registration token create`).
    #[command(subcommand)]
    Registration(registration::RegistrationCmd),
}

/// A command line clap refused, as the README promises: help and version
/// requests (`None`) are printed as clap renders them and exit 0; anything
/// else becomes the one line after `deputy: error: ` (exit 1), not clap's
/// multi-line usage with exit 2.
pub fn usage_error(e: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    let text = e.render().to_string();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => None,
        // `deputy` or `deputy client` alone: clap would print the whole help.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let usage = text
                .lines()
                .find_map(|l| l.strip_prefix("Usage: "))
                .unwrap_or("deputy --help");
            Some(format!("a command is required (usage: {usage})"))
        }
        // The first paragraph: the message and, for missing arguments, the
        // indented list that follows it; tips and usage come after a blank line.
        _ => {
            let mut lines = text.lines().take_while(|l| !l.trim().is_empty());
            let first = lines.next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let rest: Vec<&str> = lines.map(str::trim).collect();
            Some(if rest.is_empty() {
                first.to_string()
            } else {
                format!("{} {}", first, rest.join(", "))
            })
        }
    }
}

/// A command's failure: one line for the user.
pub type CliResult = Result<(), String>;

/// Defaults, then the file, then DEPUTY_* variables, then flags, validated.
pub fn load_settings(cli: &Cli, flags: &[(&str, Option<&str>)]) -> Result<Settings, String> {
    let file = cli
        .config
        .clone()
        .or_else(|| std::env::var_os("DEPUTY_CONFIG").map(PathBuf::from));
    let global = [
        ("database", cli.database.as_deref()),
        ("keys_dir", cli.keys_dir.as_deref()),
    ];
    let given: Vec<(&str, &str)> = global
        .iter()
        .chain(flags.iter())
        .filter_map(|(k, v)| v.map(|v| (*k, v)))
        .collect();
    Settings::load(file.as_deref(), std::env::vars(), &given).map_err(|e| e.to_string())
}

fn open_db(settings: &Settings) -> Result<crate::store::Direct, String> {
    crate::store::Direct::open(&settings.database)
        .map_err(|e| format!("setting `database` ({}): {e}", settings.database_shown()))
}

/// One change in one transaction; a refusal (`Ok(Err(message))`) writes nothing.
fn change<T: Send>(
    db: &mut crate::store::Direct,
    f: impl FnMut(&dyn crate::store::Db) -> crate::store::StoreResult<Result<T, String>> + Send,
) -> Result<T, String> {
    db.transact(f).map_err(|e| e.to_string())?
}

/// A read on the CLI's connection.
fn read<T: Send>(
    db: &mut crate::store::Direct,
    f: impl FnOnce(&dyn crate::store::Db) -> crate::store::StoreResult<T> + Send,
) -> Result<T, String> {
    db.read(f).map_err(|e| e.to_string())
}

/// Output for people and scripts. A reader that stops early (`| head`) is
/// not an error: the work is already committed, so a closed pipe is ignored
/// (println! would panic on it).
fn print_json(v: &serde_json::Value) {
    use std::io::Write;
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn now() -> i64 {
    crate::clock::Clock::now(&crate::clock::SystemClock)
}

/// Run the parsed command.
pub fn run(cli: Cli) -> CliResult {
    match &cli.command {
        Command::Serve(args) => serve::run(&cli, args),
        Command::Migrate => {
            let settings = load_settings(&cli, &[])?;
            if let Some(url) = settings.postgres_url() {
                let (_, applied, version) = crate::store::postgres::PgStore::open_migrated(url)
                    .map_err(|e| {
                        format!("setting `database` ({}): {e}", settings.database_shown())
                    })?;
                print_json(&serde_json::json!({"applied": applied, "version": version}));
                return Ok(());
            }
            if let Some(parent) = settings
                .database
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    format!(
                        "setting `database`: cannot create {}: {e}",
                        parent.display()
                    )
                })?;
            }
            let mut conn = crate::store::sqlite::open_connection(&settings.database, false)
                .map_err(|e| format!("setting `database`: {e}"))?;
            let applied = crate::store::migrate::migrate(&mut conn).map_err(|e| e.to_string())?;
            let version =
                crate::store::migrate::current_version(&conn).map_err(|e| e.to_string())?;
            print_json(&serde_json::json!({"applied": applied, "version": version}));
            Ok(())
        }
        Command::Client(cmd) => client::run(&cli, cmd),
        Command::Registration(cmd) => registration::run(&cli, cmd),
        Command::Resource(cmd) => resource::run(&cli, cmd),
        Command::User(cmd) => user::run(&cli, cmd),
        Command::Keys(cmd) => keys::run(&cli, cmd),
        Command::Delegation(cmd) => delegation::run(&cli, cmd),
        Command::Admin(cmd) => admin::run(&cli, cmd),
        Command::Store(cmd) => store::run(&cli, cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(args: &[&str]) -> Option<String> {
        let argv = std::iter::once("deputy").chain(args.iter().copied());
        usage_error(&Cli::try_parse_from(argv).unwrap_err())
    }

    #[test]
    fn usage_errors_are_one_line_and_help_is_not_an_error() {
        assert_eq!(refused(&["--help"]), None);
        assert_eq!(refused(&["--version"]), None);
        assert_eq!(
            refused(&["--bogus"]).unwrap(),
            "unexpected argument '--bogus' found"
        );
        assert_eq!(
            refused(&["audit", "--since", "abc"]).unwrap(),
            "invalid value 'abc' for '--since <SINCE>': invalid digit found in string"
        );
        assert_eq!(
            refused(&["user", "add", "--username", "x"]).unwrap(),
            "the following required arguments were not provided: --password-stdin"
        );
        assert_eq!(
            refused(&["client"]).unwrap(),
            "a command is required (usage: deputy client [OPTIONS] <COMMAND>)"
        );
    }

    /// Token and grant ids are base64url: one in 32 begins with `-` and
    /// must still be read as the id (seen in CI: `deputy trace -kGM...`).
    #[test]
    fn ids_beginning_with_a_hyphen_are_ids() {
        for args in [
            &["trace", "-kGMEQQo6JnK"][..],
            &["revoke", "--jti", "-kGMEQQo6JnK"],
            &["revoke", "--grant", "-x1"],
        ] {
            let argv = std::iter::once("deputy").chain(args.iter().copied());
            assert!(Cli::try_parse_from(argv).is_ok(), "{args:?}");
        }
    }
}
