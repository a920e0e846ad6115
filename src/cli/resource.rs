//! `deputy resource add|list|remove`.

use clap::Subcommand;

use super::{change, load_settings, now, open_db, print_json, read, Cli, CliResult};
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
            let r = Resource {
                id: id.clone(),
                client_id: client.clone(),
                scopes: parsed,
                created_at: now(),
            };
            change(&mut conn, |tx| {
                if let Some(c) = client {
                    if crate::store::clients::get(tx, c)?.is_none() {
                        return Ok(Err(format!("no client `{c}`")));
                    }
                }
                if resources::get(tx, id)?.is_some() {
                    return Ok(Err(format!("resource `{id}` already exists")));
                }
                resources::insert(tx, &r)?;
                Ok(Ok(()))
            })?;
            print_json(&r.to_json());
            Ok(())
        }
        ResourceCmd::List => {
            let all = read(&mut conn, resources::list)?;
            print_json(&serde_json::Value::Array(
                all.iter().map(Resource::to_json).collect(),
            ));
            Ok(())
        }
        ResourceCmd::Remove { id } => {
            change(&mut conn, |tx| {
                Ok(if resources::remove(tx, id)? {
                    Ok(())
                } else {
                    Err(format!("no resource `{id}`"))
                })
            })?;
            print_json(&serde_json::json!({"removed": id}));
            Ok(())
        }
    }
}
