//! `deputy user add|list|disable`.

use std::io::BufRead;

use clap::Subcommand;

use super::{change, load_settings, now, open_db, print_json, read, Cli, CliResult};
use crate::secret::{hash_secret, random_token, Argon2Profile};
use crate::store::users::{self, User};

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a person; the password is read from standard input (one line).
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    List,
    /// Disable a person; everything issued for them is revoked.
    Disable {
        username: String,
    },
}

pub fn run(cli: &Cli, cmd: &UserCmd) -> CliResult {
    let settings = load_settings(cli, &[])?;
    let mut conn = open_db(&settings)?;
    match cmd {
        UserCmd::Add {
            username,
            email,
            name,
            password_stdin: _,
        } => {
            if username.is_empty()
                || username.len() > 128
                || username
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace())
            {
                return Err("--username must be 1-128 characters without spaces".to_string());
            }
            if let Some(e) = email {
                if !e.contains('@') || e.len() > 254 {
                    return Err(format!("--email `{e}` is not an email address"));
                }
            }
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            if password.len() < 8 {
                return Err("the password must be at least 8 characters".to_string());
            }
            let user = User {
                id: random_token(16),
                username: username.clone(),
                email: email.clone(),
                name: name.clone(),
                password_hash: hash_secret(&password, Argon2Profile::Password)?,
                disabled_at: None,
                created_at: now(),
            };
            // Person changes are audited in the same transaction (README, Audit trail).
            let event = crate::audit::AuditEvent::new(
                user.created_at,
                "person_added",
                crate::audit::Mode::Admin,
            )
            .person(Some(&user.id));
            change(&mut conn, |tx| {
                if users::by_username(tx, username)?.is_some() {
                    return Ok(Err(format!("user `{username}` already exists")));
                }
                users::insert(tx, &user)?;
                crate::store::audit::insert(tx, &event)?;
                Ok(Ok(()))
            })?;
            print_json(&user.to_json());
            Ok(())
        }
        UserCmd::List => {
            let all = read(&mut conn, users::list)?;
            print_json(&serde_json::Value::Array(
                all.iter().map(User::to_json).collect(),
            ));
            Ok(())
        }
        UserCmd::Disable { username } => {
            let t = now();
            let (id, revoked) = change(&mut conn, |tx| {
                let Some(id) = users::disable(tx, username, t)? else {
                    return Ok(Err(format!("no user `{username}`")));
                };
                let revoked = crate::store::tokens::revoke_subject(tx, &id, t, "person disabled")?;
                let mut event =
                    crate::audit::AuditEvent::new(t, "person_disabled", crate::audit::Mode::Admin)
                        .person(Some(&id));
                event.detail = Some(serde_json::json!({"tokens_revoked": revoked}).to_string());
                crate::store::audit::insert(tx, &event)?;
                Ok(Ok((id, revoked)))
            })?;
            print_json(
                &serde_json::json!({"disabled": username, "id": id, "tokens_revoked": revoked}),
            );
            Ok(())
        }
    }
}
