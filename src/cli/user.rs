//! `deputy user add|update|list|disable`.

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
        /// The operator vouches that the address belongs to the person
        /// (`email_verified: true` in ID tokens and at /userinfo).
        #[arg(long, requires = "email")]
        email_verified: bool,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Change a person's email, name or verified flag. A new address is
    /// unverified unless `--email-verified` is given with it.
    Update {
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, conflicts_with = "email_unverified")]
        email_verified: bool,
        #[arg(long)]
        email_unverified: bool,
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
            email_verified,
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
            check_email(email.as_deref())?;
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
                email_verified: *email_verified,
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
        UserCmd::Update {
            username,
            email,
            name,
            email_verified,
            email_unverified,
        } => {
            check_email(email.as_deref())?;
            if let Some(n) = name {
                if n.chars().any(char::is_control) || n.len() > 256 {
                    return Err(
                        "--name must be at most 256 characters without control characters"
                            .to_string(),
                    );
                }
            }
            if email.is_none() && name.is_none() && !email_verified && !email_unverified {
                return Err(
                    "nothing to change: give --email, --name, --email-verified or --email-unverified"
                        .to_string(),
                );
            }
            let t = now();
            let user = change(&mut conn, |tx| {
                let Some(mut user) = users::by_username(tx, username)? else {
                    return Ok(Err(format!("no user `{username}`")));
                };
                let mut changed = Vec::new();
                if let Some(e) = email {
                    if user.email.as_deref() != Some(e.as_str()) {
                        user.email = Some(e.clone());
                        // Whoever vouched for the old address did not vouch for this one.
                        user.email_verified = false;
                        changed.push("email");
                    }
                }
                if let Some(n) = name {
                    if user.name.as_deref() != Some(n.as_str()) {
                        user.name = Some(n.clone());
                        changed.push("name");
                    }
                }
                if *email_verified || *email_unverified {
                    if user.email.is_none() && *email_verified {
                        return Ok(Err(format!(
                            "user `{username}` has no email to verify: give --email too"
                        )));
                    }
                    if user.email_verified != *email_verified {
                        changed.push("email_verified");
                    }
                    user.email_verified = *email_verified;
                }
                users::set_profile(tx, &user)?;
                // The audit says what changed, not the new values (personal data).
                let mut event =
                    crate::audit::AuditEvent::new(t, "person_updated", crate::audit::Mode::Admin)
                        .person(Some(&user.id));
                event.detail = Some(
                    serde_json::json!({"changed": changed, "email_verified": user.email_verified})
                        .to_string(),
                );
                crate::store::audit::insert(tx, &event)?;
                Ok(Ok(user))
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

fn check_email(email: Option<&str>) -> Result<(), String> {
    match email {
        Some(e)
            if !e.contains('@')
                || e.len() > 254
                || e.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            Err(format!("--email `{e}` is not an email address"))
        }
        _ => Ok(()),
    }
}
