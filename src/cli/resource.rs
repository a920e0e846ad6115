//! `deputy resource add|list|remove`.

use clap::Subcommand;
use rusqlite::TransactionBehavior;

use super::{load_settings, now, open_db, print_json, Cli, CliResult};
use crate::policy::{is_valid_resource_uri, is_valid_scope_token};
use crate::store::resources::{self, Resource};

#[derive(Subcommand, Debug)]
pub enum ResourceCmd {
    /// Register an API tokens can be addressed to.
    Add {
        /// The resource's URI (its audience value).
        #[arg(long)]
        id: String,
        /// The client that is this API: tokens addressed to the resource count
        /// as addressed to that client.
        #[arg(long)]
        client: Option<String>,
        /// NAME=DESCRIPTION; the description is what the consent page shows.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    List,
    Remove {
        id: String,
    },
}

pub fn run(cli: &Cli, cmd: &ResourceCmd) -> CliResult {
    let settings = load_settings(cli, &[])?;
    let mut conn = open_db(&settings)?;
    match cmd {
        ResourceCmd::Add { id, client, scopes } => {
            if !is_valid_resource_uri(id) {
                return Err(format!(
                    "--id `{id}` must be an absolute URI without a fragment"
                ));
            }
            let mut parsed = Vec::new();
            for s in scopes {
                let (name, desc) = s
                    .split_once('=')
                    .ok_or_else(|| format!("--scope `{s}` must be NAME=DESCRIPTION"))?;
                if !is_valid_scope_token(name) {
                    return Err(format!("scope name `{name}` is not a valid scope token"));
                }
                if desc.trim().is_empty() {
                    return Err(format!("scope `{name}` needs a description"));
                }
                if parsed.iter().any(|(n, _): &(String, String)| n == name) {
                    return Err(format!("scope `{name}` given twice"));
                }
                parsed.push((name.to_string(), desc.trim().to_string()));
            }
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| e.to_string())?;
            if let Some(c) = client {
                if crate::store::clients::get(&tx, c)
                    .map_err(|e| e.to_string())?
                    .is_none()
                {
                    return Err(format!("no client `{c}`"));
                }
            }
            if resources::get(&tx, id)
                .map_err(|e| e.to_string())?
                .is_some()
            {
                return Err(format!("resource `{id}` already exists"));
            }
            let r = Resource {
                id: id.clone(),
                client_id: client.clone(),
                scopes: parsed,
                created_at: now(),
            };
            resources::insert(&tx, &r).map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
            print_json(&r.to_json());
            Ok(())
        }
        ResourceCmd::List => {
            let all = resources::list(&conn).map_err(|e| e.to_string())?;
            print_json(&serde_json::Value::Array(
                all.iter().map(Resource::to_json).collect(),
            ));
            Ok(())
        }
        ResourceCmd::Remove { id } => {
            if !resources::remove(&conn, id).map_err(|e| e.to_string())? {
                return Err(format!("no resource `{id}`"));
            }
            print_json(&serde_json::json!({"removed": id}));
            Ok(())
        }
    }
}
