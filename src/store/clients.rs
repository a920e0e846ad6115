//! Registered clients.

use super::db::{Db, Row};
use super::{from_json_list, to_json_list, StoreError, StoreResult};
use crate::args;
use crate::model::{AuthMethod, ClientKind, GrantType, IdTokenAlg};

#[derive(Clone)]
pub struct Client {
    pub id: String,
    pub kind: ClientKind,
    pub name: String,
    pub auth_method: AuthMethod,
    /// argon2id PHC string of the client secret (secret clients only).
    pub secret_hash: Option<String>,
    /// Registered JWK Set (JSON text), for `private_key_jwt`.
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    /// The one JWS algorithm this client signs assertions with.
    pub assertion_alg: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub created_at: i64,
    /// Put the claims of the granted `profile`/`email` scopes into ID
    /// tokens too, not only at /userinfo (OIDC Core §5.4).
    pub id_token_claims: bool,
    /// The algorithm of this client's ID tokens.
    pub id_token_alg: IdTokenAlg,
}

impl std::fmt::Debug for Client {
    // The secret hash stays out of logs and debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("auth_method", &self.auth_method)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Public view for the CLI and admin API (never the secret hash).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "name": self.name,
            "auth_method": self.auth_method.as_str(),
            "assertion_alg": if self.auth_method == AuthMethod::PrivateKeyJwt { Some(&self.assertion_alg) } else { None },
            "jwks_uri": self.jwks_uri,
            "jwks": self.jwks.as_deref().and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()),
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
            "grant_types": self.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "scopes": self.scopes,
            "audiences": self.audiences,
            "created_at": self.created_at,
            "id_token_claims": self.id_token_claims,
            "id_token_alg": self.id_token_alg.as_str(),
        })
    }
}

const COLUMNS: &str = "id, kind, name, auth_method, secret_hash, jwks, jwks_uri, assertion_alg, \
     redirect_uris, post_logout_redirect_uris, grant_types, scopes, audiences, created_at, \
     id_token_claims, id_token_alg";

fn from_row(r: &Row) -> StoreResult<Client> {
    let kind: String = r.get(1)?;
    let auth: String = r.get(3)?;
    let grants: String = r.get(10)?;
    {
        let grant_types = from_json_list(&grants)?
            .iter()
            .map(|g| {
                GrantType::parse(g).ok_or_else(|| StoreError::Corrupt(format!("grant type {g}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Client {
            id: r.get(0)?,
            kind: ClientKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("client kind {kind}")))?,
            name: r.get(2)?,
            auth_method: AuthMethod::parse(&auth)
                .ok_or_else(|| StoreError::Corrupt(format!("auth method {auth}")))?,
            secret_hash: r.get(4)?,
            jwks: r.get(5)?,
            jwks_uri: r.get(6)?,
            assertion_alg: r.get(7)?,
            redirect_uris: from_json_list(&r.get::<String>(8)?)?,
            post_logout_redirect_uris: from_json_list(&r.get::<String>(9)?)?,
            grant_types,
            scopes: from_json_list(&r.get::<String>(11)?)?,
            audiences: from_json_list(&r.get::<String>(12)?)?,
            created_at: r.get(13)?,
            id_token_claims: r.get(14)?,
            id_token_alg: {
                let alg: String = r.get(15)?;
                IdTokenAlg::parse(&alg)
                    .ok_or_else(|| StoreError::Corrupt(format!("id token alg {alg}")))?
            },
        })
    }
}

pub fn insert(conn: &dyn Db, c: &Client) -> StoreResult<()> {
    let grants: Vec<String> = c
        .grant_types
        .iter()
        .map(|g| g.as_str().to_string())
        .collect();
    conn.execute(
        &format!("INSERT INTO clients ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
        args![
            &c.id,
            c.kind.as_str(),
            &c.name,
            c.auth_method.as_str(),
            &c.secret_hash,
            &c.jwks,
            &c.jwks_uri,
            &c.assertion_alg,
            to_json_list(&c.redirect_uris),
            to_json_list(&c.post_logout_redirect_uris),
            to_json_list(&grants),
            to_json_list(&c.scopes),
            to_json_list(&c.audiences),
            c.created_at,
            c.id_token_claims,
            c.id_token_alg.as_str(),
        ],
    )?;
    Ok(())
}

pub fn get(conn: &dyn Db, id: &str) -> StoreResult<Option<Client>> {
    conn.query_one(
        &format!("SELECT {COLUMNS} FROM clients WHERE id = ?1"),
        args![id],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

pub fn list(conn: &dyn Db) -> StoreResult<Vec<Client>> {
    conn.query(&format!("SELECT {COLUMNS} FROM clients ORDER BY id"), &[])?
        .iter()
        .map(from_row)
        .collect()
}

/// Remove a client. Returns false when there was none.
pub fn remove(conn: &dyn Db, id: &str) -> StoreResult<bool> {
    Ok(conn.execute("DELETE FROM clients WHERE id = ?1", args![id])? > 0)
}
