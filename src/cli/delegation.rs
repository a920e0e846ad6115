//! `deputy delegation allow|list|remove`: the token-exchange policy.

use clap::Subcommand;

use super::{change, load_settings, now, open_db, print_json, read, Cli, CliResult};
use crate::policy::delegation::DelegationRule;
use crate::policy::is_valid_scope_token;
use crate::secret::random_token;
use crate::store::delegation;

#[derive(Subcommand, Debug)]
pub enum DelegationCmd {
    /// Allow an actor to obtain delegation tokens for a target audience.
    Allow {
        /// The client that acts (an agent or a service).
        #[arg(long)]
        actor: String,
        /// The target audience it may obtain tokens for.
        #[arg(long)]
        audience: String,
        /// The most scope it may get there (at least one).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Longest lifetime of an issued token, in seconds (default 300).
        #[arg(long, default_value_t = 300)]
        max_lifetime: i64,
        /// Longest `act` chain the issued token may carry (default 1: one hop).
        #[arg(long, default_value_t = 1)]
        max_depth: i64,
        /// A broker client that may request on the actor's behalf with the
        /// actor's own token as `actor_token`.
        #[arg(long)]
        broker: Option<String>,
        /// Tokens under this rule only with a DPoP proof by the actor, bound
        /// to its key (RFC 9449).
        #[arg(long)]
        require_dpop: bool,
    },
    /// List every rule.
    List,
    /// Remove a rule by id, or by --actor and --audience.
    Remove {
        id: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        audience: Option<String>,
    },
}

fn rule_json(r: &DelegationRule) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or_default()
}

pub fn run(cli: &Cli, cmd: &DelegationCmd) -> CliResult {
    let settings = load_settings(cli, &[])?;
    let mut conn = open_db(&settings)?;
    match cmd {
        DelegationCmd::Allow {
            actor,
            audience,
            scopes,
            max_lifetime,
            max_depth,
            broker,
            require_dpop,
        } => {
            if scopes.is_empty() {
                return Err(
                    "give at least one --scope: a rule without scope allows nothing".to_string(),
                );
            }
            if let Some(s) = scopes.iter().find(|s| !is_valid_scope_token(s)) {
                return Err(format!("scope `{s}` is not a valid scope token"));
            }
            if !(1..=86_400).contains(max_lifetime) {
                return Err("--max-lifetime must be between 1 and 86400 seconds".to_string());
            }
            if !(1..=16).contains(max_depth) {
                return Err("--max-depth must be between 1 and 16".to_string());
            }
            if audience.is_empty()
                || audience.len() > 512
                || audience.chars().any(|c| c.is_control() || c == ' ')
            {
                return Err(format!("--audience `{audience}` is not valid"));
            }
            let mut unique = Vec::new();
            for s in scopes {
                if !unique.contains(s) {
                    unique.push(s.clone());
                }
            }
            let rule = DelegationRule {
                id: format!("rule-{}", random_token(9)),
                actor: actor.clone(),
                audience: audience.clone(),
                scopes: unique,
                max_lifetime: *max_lifetime,
                max_depth: *max_depth,
                broker: broker.clone(),
                created_at: now(),
                require_dpop: *require_dpop,
            };
            let mut e = crate::audit::AuditEvent::new(
                rule.created_at,
                "delegation_allowed",
                crate::audit::Mode::Admin,
            );
            e.client_id = Some(actor.clone());
            e.audience = Some(audience.clone());
            e.rule_id = Some(rule.id.clone());
            e.scope = Some(rule.scopes.join(" "));
            change(&mut conn, |tx| {
                for who in std::iter::once(actor).chain(broker.iter()) {
                    if crate::store::clients::get(tx, who)?.is_none() {
                        return Ok(Err(format!("no client `{who}`")));
                    }
                }
                if delegation::find(tx, actor, audience)?.is_some() {
                    return Ok(Err(format!(
                        "a rule for actor `{actor}` and audience `{audience}` exists; remove it first"
                    )));
                }
                delegation::insert(tx, &rule)?;
                crate::store::audit::insert(tx, &e)?;
                Ok(Ok(()))
            })?;
            print_json(&rule_json(&rule));
            Ok(())
        }
        DelegationCmd::List => {
            let all = read(&mut conn, delegation::list)?;
            print_json(&serde_json::Value::Array(
                all.iter().map(rule_json).collect(),
            ));
            Ok(())
        }
        DelegationCmd::Remove {
            id,
            actor,
            audience,
        } => {
            let t = now();
            let rule = change(&mut conn, |tx| {
                let rule = match (id, actor, audience) {
                    (Some(id), None, None) => delegation::get(tx, id)?,
                    (None, Some(a), Some(b)) => delegation::find(tx, a, b)?,
                    _ => return Ok(Err("give a rule id, or --actor and --audience".to_string())),
                };
                let Some(rule) = rule else {
                    return Ok(Err("no such rule".to_string()));
                };
                delegation::remove(tx, &rule.id)?;
                // Rule changes are part of the trail: which rule allowed what, until when.
                let mut e = crate::audit::AuditEvent::new(
                    t,
                    "delegation_removed",
                    crate::audit::Mode::Admin,
                );
                e.client_id = Some(rule.actor.clone());
                e.audience = Some(rule.audience.clone());
                e.rule_id = Some(rule.id.clone());
                e.scope = Some(rule.scopes.join(" "));
                crate::store::audit::insert(tx, &e)?;
                Ok(Ok(rule))
            })?;
            print_json(&serde_json::json!({"removed": true, "id": rule.id}));
            Ok(())
        }
    }
}
