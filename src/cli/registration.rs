//! `deputy registration token create|list|revoke`: initial access tokens
//! for dynamic client registration (RFC 7591 §3) when `registration =
//! "token"`. A token is shown once; its id is the SHA-256 deputy keeps, so
//! an operator can list and revoke tokens without ever seeing one again.

use clap::Subcommand;

use super::{change, load_settings, now, open_db, print_json, Cli, CliResult};

#[derive(Subcommand, Debug)]
pub enum RegistrationCmd {
    /// Initial access tokens.
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create an initial access token; printed once (only its hash is kept).
    Create {
        /// Seconds until it expires (default: never).
        #[arg(long)]
        expires_in: Option<i64>,
        /// How many registrations it allows (default: any number).
        #[arg(long)]
        max_uses: Option<i64>,
    },
    /// List initial access tokens (ids, uses, expiry; never the tokens).
    List,
    /// Revoke an initial access token by its id: no registration can use it.
    Revoke {
        /// The id `create` and `list` print.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

pub fn run(cli: &Cli, cmd: &RegistrationCmd) -> CliResult {
    let settings = load_settings(cli, &[])?;
    let mut conn = open_db(&settings)?;
    match cmd {
        RegistrationCmd::Token(TokenCmd::Create {
            expires_in,
            max_uses,
        }) => {
            if expires_in.is_some_and(|s| !(1..=10 * 365 * 24 * 3600).contains(&s)) {
                return Err("--expires-in must be 1 to 315360000 seconds".to_string());
            }
            if max_uses.is_some_and(|n| n < 1) {
                return Err("--max-uses must be at least 1".to_string());
            }
            let t = now();
            let (token, record) = crate::client_registry::registration::new_initial_access_token(
                t,
                *expires_in,
                *max_uses,
            );
            let event = crate::audit::AuditEvent::new(
                t,
                "registration_token_created",
                crate::audit::Mode::Admin,
            );
            change(&mut conn, |tx| {
                crate::store::registration_tokens::insert(tx, &record)?;
                let mut e = event.clone();
                e.detail = Some(
                    serde_json::json!({"expires_at": record.expires_at, "max_uses": record.max_uses})
                        .to_string(),
                );
                crate::store::audit::insert(tx, &e)?;
                Ok(Ok(()))
            })?;
            let mut out = serde_json::Map::new();
            out.insert("initial_access_token".into(), token.into());
            out.insert("id".into(), record.token_hash.clone().into());
            out.insert("expires_at".into(), record.expires_at.into());
            out.insert("max_uses".into(), record.max_uses.into());
            if settings.registration != crate::config::RegistrationMode::Token {
                out.insert(
                    "note".into(),
                    "the setting `registration` is not `token`: this token is not asked for until it is"
                        .into(),
                );
            }
            print_json(&serde_json::Value::Object(out));
            Ok(())
        }
        RegistrationCmd::Token(TokenCmd::List) => {
            let t = now();
            let rows = super::read(&mut conn, crate::store::registration_tokens::list)?;
            let out: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.token_hash,
                        "created_at": r.created_at,
                        "expires_at": r.expires_at,
                        "max_uses": r.max_uses,
                        "uses": r.uses,
                        "live": r.is_live(t),
                    })
                })
                .collect();
            print_json(&serde_json::Value::Array(out));
            Ok(())
        }
        RegistrationCmd::Token(TokenCmd::Revoke { id }) => {
            let t = now();
            let mut event = crate::audit::AuditEvent::new(
                t,
                "registration_token_revoked",
                crate::audit::Mode::Admin,
            );
            event.detail = Some(serde_json::json!({ "id": id }).to_string());
            change(&mut conn, |tx| {
                if !crate::store::registration_tokens::remove(tx, id)? {
                    return Ok(Err(format!("no initial access token with id `{id}`")));
                }
                crate::store::audit::insert(tx, &event)?;
                Ok(Ok(()))
            })?;
            print_json(&serde_json::json!({ "revoked": id }));
            Ok(())
        }
    }
}
