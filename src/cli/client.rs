//! `deputy client add|list|show|remove|block`.

use clap::Subcommand;

use super::{change, load_settings, now, open_db, print_json, read, Cli, CliResult};
use crate::client_auth::jwks::{parse_for_alg, SUPPORTED_ALGS};
use crate::client_auth::remote::uri_allowed;
use crate::model::{AuthMethod, ClientKind, GrantType, IdTokenAlg};
use crate::policy::is_valid_scope_token;
use crate::secret::{hash_secret, new_secret, Argon2Profile};
use crate::store::clients::{self, Client};

#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    /// Register a client; prints it as JSON (and a generated secret, once).
    Add(Box<AddArgs>),
    /// List clients.
    List,
    /// Show one client.
    Show { id: String },
    /// Remove a client and revoke every token issued to it.
    Remove { id: String },
    /// Block a client (e.g. a metadata document URL, before or after its
    /// first use): it becomes unknown everywhere and its tokens are revoked.
    Block { id: String },
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[arg(long)]
    pub id: String,
    /// app (frontend signing people in), service (backend), agent (acts for people).
    #[arg(long)]
    pub kind: String,
    /// private_key_jwt | client_secret_basic | client_secret_post | none
    #[arg(long)]
    pub auth: String,
    #[arg(long)]
    pub name: Option<String>,
    /// JWK Set file with the client's public keys (private_key_jwt).
    #[arg(long, conflicts_with = "jwks_uri")]
    pub jwks_file: Option<std::path::PathBuf>,
    /// URL of the client's JWK Set (private_key_jwt; https only).
    #[arg(long)]
    pub jwks_uri: Option<String>,
    /// Assertion signing algorithm: ES256 (default), RS256, PS256 or EdDSA.
    #[arg(long, default_value = "ES256")]
    pub alg: String,
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Grant types; defaults by kind (app: authorization_code, refresh_token;
    /// service: client_credentials; agent: authorization_code, refresh_token, token-exchange).
    #[arg(long = "grant")]
    pub grants: Vec<String>,
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    #[arg(long = "audience")]
    pub audiences: Vec<String>,
    /// Put the claims of the granted profile/email scopes into ID tokens
    /// too, for relying parties that read only the ID token (OIDC Core §5.4).
    #[arg(long)]
    pub id_token_claims: bool,
    /// Issue tokens to this client only with a DPoP proof, bound to its key
    /// (RFC 9449 §5.2).
    #[arg(long)]
    pub require_dpop: bool,
    /// ID token signing algorithm: ES256 (default) or RS256.
    #[arg(long, default_value = "ES256")]
    pub id_token_alg: String,
}

/// Redirect URIs: absolute, no fragment (RFC 6749 §3.1.2).
fn check_redirect_uri(u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u)
        .map_err(|_not_a_url| format!("redirect URI `{u}` is not an absolute URI"))?;
    if parsed.fragment().is_some() || u.contains('#') {
        return Err(format!("redirect URI `{u}` must not contain a fragment"));
    }
    if parsed.cannot_be_a_base() && !u.contains(":/") {
        // private-use schemes like com.example.app:/cb are fine; bare `mailto:` is not
        return Err(format!("redirect URI `{u}` is not usable"));
    }
    Ok(())
}

fn default_grants(kind: ClientKind) -> Vec<GrantType> {
    match kind {
        ClientKind::App => vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        ClientKind::Service => vec![GrantType::ClientCredentials],
        ClientKind::Agent => vec![
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::TokenExchange,
        ],
    }
}

/// Validate the arguments into a client (and its new secret, if any).
fn build(args: &AddArgs, allow_loopback: bool) -> Result<(Client, Option<String>), String> {
    if !crate::model::is_valid_client_id(&args.id) {
        return Err("--id must be 1-128 printable characters without spaces".to_string());
    }
    let kind = ClientKind::parse(&args.kind).ok_or("--kind must be app, service or agent")?;
    let auth = AuthMethod::parse(&args.auth)
        .ok_or("--auth must be private_key_jwt, client_secret_basic, client_secret_post or none")?;
    let mut grants = Vec::new();
    for g in &args.grants {
        let grant = GrantType::parse_cli(g).ok_or_else(|| {
            format!(
                "unknown grant `{g}` (authorization_code, client_credentials, refresh_token, token-exchange)"
            )
        })?;
        if !grants.contains(&grant) {
            grants.push(grant);
        }
    }
    if grants.is_empty() {
        grants = default_grants(kind);
    }
    if auth == AuthMethod::None {
        if let Some(g) = grants
            .iter()
            .find(|g| !matches!(g, GrantType::AuthorizationCode | GrantType::RefreshToken))
        {
            return Err(format!(
                "a public client (--auth none) cannot use the {g} grant"
            ));
        }
    }
    for u in args
        .redirect_uris
        .iter()
        .chain(&args.post_logout_redirect_uris)
    {
        check_redirect_uri(u)?;
    }
    if grants.contains(&GrantType::AuthorizationCode) && args.redirect_uris.is_empty() {
        return Err("the authorization_code grant needs at least one --redirect-uri".to_string());
    }
    for s in &args.scopes {
        if !is_valid_scope_token(s) {
            return Err(format!("scope `{s}` is not a valid scope token"));
        }
    }
    for a in &args.audiences {
        if a.is_empty() || a.len() > 512 || a.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!("audience `{a}` is not valid"));
        }
    }
    let (mut jwks, mut jwks_uri) = (None, None);
    if auth == AuthMethod::PrivateKeyJwt {
        if !SUPPORTED_ALGS.contains(&args.alg.as_str()) {
            return Err(format!(
                "--alg must be one of {}",
                SUPPORTED_ALGS.join(", ")
            ));
        }
        match (&args.jwks_file, &args.jwks_uri) {
            (Some(f), None) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read --jwks-file {}: {e}", f.display()))?;
                parse_for_alg(&text, &args.alg).map_err(|e| format!("--jwks-file: {e}"))?;
                // Store it compact and canonical.
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| e.to_string())?;
                jwks = Some(v.to_string());
            }
            (None, Some(u)) => {
                if !uri_allowed(u, allow_loopback) {
                    return Err(format!("--jwks-uri `{u}` must be an https URL"));
                }
                jwks_uri = Some(u.clone());
            }
            _ => return Err("private_key_jwt needs --jwks-file or --jwks-uri".to_string()),
        }
    } else if args.jwks_file.is_some() || args.jwks_uri.is_some() {
        return Err("--jwks-file and --jwks-uri are only for private_key_jwt clients".to_string());
    }
    let id_token_alg = IdTokenAlg::parse(&args.id_token_alg)
        .ok_or_else(|| "--id-token-alg must be ES256 or RS256".to_string())?;
    let secret = auth.uses_secret().then(new_secret);
    let secret_hash = match &secret {
        Some(s) => Some(hash_secret(s, Argon2Profile::GeneratedSecret)?),
        None => None,
    };
    let client = Client {
        id: args.id.clone(),
        kind,
        name: args.name.clone().unwrap_or_else(|| args.id.clone()),
        auth_method: auth,
        secret_hash,
        jwks,
        jwks_uri,
        assertion_alg: args.alg.clone(),
        redirect_uris: args.redirect_uris.clone(),
        post_logout_redirect_uris: args.post_logout_redirect_uris.clone(),
        grant_types: grants,
        scopes: args.scopes.clone(),
        audiences: args.audiences.clone(),
        created_at: now(),
        id_token_claims: args.id_token_claims,
        id_token_alg,
        require_dpop: args.require_dpop,
        origin: Default::default(),
    };
    Ok((client, secret))
}

pub fn run(cli: &Cli, cmd: &ClientCmd) -> CliResult {
    let settings = load_settings(cli, &[])?;
    let mut conn = open_db(&settings)?;
    match cmd {
        ClientCmd::Add(args) => {
            let (client, secret) = build(args, settings.allow_loopback_fetch)?;
            let mut event =
                crate::audit::AuditEvent::new(now(), "client_added", crate::audit::Mode::Admin)
                    .client(&client.id, client.kind.as_str());
            event.detail =
                Some(serde_json::json!({"auth_method": client.auth_method.as_str()}).to_string());
            change(&mut conn, |tx| {
                if clients::get(tx, &client.id)?.is_some() {
                    return Ok(Err(format!("client `{}` already exists", client.id)));
                }
                clients::insert(tx, &client)?;
                crate::store::audit::insert(tx, &event)?;
                Ok(Ok(()))
            })?;
            let mut out = client.to_json();
            if let (Some(s), Some(obj)) = (secret, out.as_object_mut()) {
                obj.insert("client_secret".into(), serde_json::Value::String(s));
            }
            print_json(&out);
            Ok(())
        }
        ClientCmd::List => {
            let all = read(&mut conn, clients::list)?;
            print_json(&serde_json::Value::Array(
                all.iter().map(Client::to_json).collect(),
            ));
            Ok(())
        }
        ClientCmd::Show { id } => {
            let c = read(&mut conn, |c| clients::get(c, id))?
                .ok_or_else(|| format!("no client `{id}`"))?;
            print_json(&c.to_json());
            Ok(())
        }
        ClientCmd::Remove { id } => {
            let t = now();
            let removal = change(&mut conn, |tx| {
                Ok(
                    crate::admin::clients::remove(tx, id, &crate::admin::Origin::Cli, t)?
                        .ok_or_else(|| format!("no client `{id}`")),
                )
            })?;
            print_json(&serde_json::json!({
                "removed": id,
                "tokens_revoked": removal.tokens_revoked,
                "rules_removed": removal.rules_removed,
                "resources_unlinked": removal.resources_unlinked,
            }));
            Ok(())
        }
        ClientCmd::Block { id } => {
            if id.is_empty() || id.len() > 2048 || id.chars().any(char::is_control) {
                return Err("the client id must be 1-2048 characters".to_string());
            }
            // A URL is matched as written: block the form requests use.
            if id.contains("://") && !crate::client_registry::metadata_document::is_document_url(id)
            {
                return Err(format!(
                    "`{id}` is not a metadata document URL as clients send it \
                     (https, a path, lower-case host, no default port, query or fragment)"
                ));
            }
            let t = now();
            let revoked = change(&mut conn, |tx| {
                Ok(
                    crate::admin::clients::block(tx, id, &crate::admin::Origin::Cli, t)?
                        .ok_or_else(|| format!("client `{id}` is blocked already")),
                )
            })?;
            print_json(&serde_json::json!({"blocked": id, "tokens_revoked": revoked}));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kind: &str, auth: &str) -> AddArgs {
        AddArgs {
            id: "c1".into(),
            kind: kind.into(),
            auth: auth.into(),
            name: None,
            jwks_file: None,
            jwks_uri: None,
            alg: "ES256".into(),
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grants: vec![],
            scopes: vec![],
            audiences: vec![],
            id_token_claims: false,
            require_dpop: false,
            id_token_alg: "ES256".into(),
        }
    }

    #[test]
    fn secret_clients_get_a_hashed_256_bit_secret() {
        let (c, s) = build(&args("service", "client_secret_basic"), false).unwrap();
        let s = s.unwrap();
        assert_eq!(s.len(), 43);
        assert!(crate::secret::verify_secret(
            &s,
            c.secret_hash.as_deref().unwrap()
        ));
        assert_eq!(c.grant_types, vec![GrantType::ClientCredentials]);
    }

    #[test]
    fn bad_input_is_refused() {
        let mut a = args("service", "client_secret_basic");
        a.grants = vec!["password".into()];
        assert!(build(&a, false).unwrap_err().contains("unknown grant"));
        let mut a = args("app", "none");
        a.redirect_uris = vec!["https://app.example/cb#frag".into()];
        assert!(build(&a, false).unwrap_err().contains("fragment"));
        let a = args("robot", "none");
        assert!(build(&a, false).is_err());
        let a = args("service", "private_key_jwt");
        assert!(build(&a, false).unwrap_err().contains("--jwks-file"));
        let mut a = args("service", "none");
        a.grants = vec!["client_credentials".into()];
        assert!(build(&a, false).unwrap_err().contains("public client"));
        let mut a = args("service", "private_key_jwt");
        a.jwks_uri = Some("http://keys.example/jwks".into());
        assert!(build(&a, false).unwrap_err().contains("https"));
    }
}
