//! `deputy revoke|trace|audit|consent withdraw`: the admin domain on the
//! CLI's own connection, each change in one IMMEDIATE transaction.

use clap::{Args, Subcommand};

use super::{change, load_settings, now, open_db, print_json, read, Cli, CliResult};
use crate::admin::{self, Origin, Selector};
use crate::store::audit::AuditQuery;

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Revoke tokens with cascade; exactly one selector (--actor may take
    /// --sub: that actor for one person). Prints {"revoked": N}.
    Revoke(RevokeArgs),
    /// Show a token, its ancestors, its descendants and the grant it hangs from.
    Trace {
        /// A token id; base64url ids may begin with `-`, read as the id.
        #[arg(allow_hyphen_values = true)]
        jti: String,
    },
    /// Read the audit trail (oldest first).
    Audit(AuditArgs),
    /// Manage remembered consent.
    #[command(subcommand)]
    Consent(ConsentCmd),
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// One token and everything derived from it (an id may begin with `-`).
    #[arg(long, allow_hyphen_values = true)]
    pub jti: Option<String>,
    /// Everything of a person or service, with their grants and refresh families.
    #[arg(long)]
    pub sub: Option<String>,
    /// Everything issued to a client, with its grants and refresh families.
    #[arg(long)]
    pub client: Option<String>,
    /// Every token whose actor chain names this actor, and its descendants.
    #[arg(long)]
    pub actor: Option<String>,
    /// A grant, its refresh family and its tokens (an id may begin with `-`).
    #[arg(long, allow_hyphen_values = true)]
    pub grant: Option<String>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[arg(long)]
    pub person: Option<String>,
    #[arg(long)]
    pub client: Option<String>,
    /// An actor named anywhere in the chain, or the acting client.
    #[arg(long)]
    pub actor: Option<String>,
    #[arg(long)]
    pub task: Option<String>,
    #[arg(long)]
    pub event: Option<String>,
    /// Unix time, inclusive.
    #[arg(long)]
    pub since: Option<i64>,
    /// Unix time, inclusive.
    #[arg(long)]
    pub until: Option<i64>,
    /// 1-1000 (default 100).
    #[arg(long)]
    pub limit: Option<i64>,
}

#[derive(Subcommand, Debug)]
pub enum ConsentCmd {
    /// Withdraw a person's consent for a client and revoke every grant of
    /// theirs for it, with tokens and refresh families.
    Withdraw {
        #[arg(long)]
        user: String,
        #[arg(long)]
        client: String,
    },
}

pub fn run(cli: &Cli, cmd: &AdminCmd) -> CliResult {
    let settings = load_settings(cli, &[])?;
    let mut conn = open_db(&settings)?;
    let t = now();
    match cmd {
        AdminCmd::Revoke(a) => {
            let sel = Selector::exactly_one(
                a.jti.clone(),
                a.sub.clone(),
                a.client.clone(),
                a.actor.clone(),
                a.grant.clone(),
            )
            .map_err(|_why| {
                "exactly one of --jti, --sub, --client, --actor, --grant is required (non-empty), or --actor with --sub"
                    .to_string()
            })?;
            let revoked = change(&mut conn, |tx| {
                Ok(Ok(admin::revoke::revoke(tx, &sel, &Origin::Cli, t)?))
            })?;
            print_json(&serde_json::json!({ "revoked": revoked }));
            Ok(())
        }
        AdminCmd::Trace { jti } => {
            let trace = read(&mut conn, |c| admin::view::trace(c, jti, t))?
                .ok_or_else(|| format!("no token `{jti}`"))?;
            print_json(&trace);
            Ok(())
        }
        AdminCmd::Audit(a) => {
            let q = AuditQuery {
                person: a.person.clone(),
                client_id: a.client.clone(),
                actor: a.actor.clone(),
                task: a.task.clone(),
                event: a.event.clone(),
                since: a.since,
                until: a.until,
                limit: Some(admin::check_limit(a.limit).map_err(|e| format!("--{e}"))?),
            };
            print_json(&read(&mut conn, |c| admin::view::audit(c, &q))?);
            Ok(())
        }
        AdminCmd::Consent(ConsentCmd::Withdraw { user, client }) => {
            let (person, w) = change(&mut conn, |tx| {
                let Some(person) = crate::store::users::by_username(tx, user)? else {
                    return Ok(Err(format!("no user `{user}`")));
                };
                let kind =
                    crate::store::clients::get(tx, client)?.map(|c| c.kind.as_str().to_string());
                let w = admin::revoke::withdraw_consent(
                    tx,
                    &person.id,
                    client,
                    kind.as_deref(),
                    &Origin::Cli,
                    t,
                )?;
                // A client that is neither registered nor known to this person's
                // consent or grants is a typo, not a withdrawal: write nothing.
                if kind.is_none() && !w.consent && w.grants == 0 && w.revoked == 0 {
                    return Ok(Err(format!("no client `{client}`")));
                }
                Ok(Ok((person, w)))
            })?;
            print_json(&serde_json::json!({
                "user": user,
                "sub": person.id,
                "client_id": client,
                "consent_withdrawn": w.consent,
                "grants_revoked": w.grants,
                "revoked": w.revoked,
            }));
            Ok(())
        }
    }
}
