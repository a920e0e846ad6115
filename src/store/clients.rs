//! Registered clients.

use super::db::{Db, Row};
use super::{from_json_list, to_json_list, StoreError, StoreResult};
use crate::args;
use crate::model::{AuthMethod, ClientKind, GrantType, IdTokenAlg, Registration};

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
    /// Tokens only with a DPoP proof (RFC 9449 §5.2,
    /// `dpop_bound_access_tokens`).
    pub require_dpop: bool,
    pub origin: ClientOrigin,
}

/// Where a client's registration came from, and its life as a
/// self-registered client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOrigin {
    pub registration: Registration,
    /// Shown on the consent page (RFC 7591 §2).
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    /// A metadata document client: the document is fetched again after this.
    pub metadata_expires_at: Option<i64>,
    /// Blocked by the operator: unknown to every endpoint.
    pub blocked_at: Option<i64>,
    /// A dynamically registered client: last seen at /authorize or /token
    /// (to the hour), so an unused one can expire.
    pub last_used_at: Option<i64>,
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
            "require_dpop": self.require_dpop,
            "registration": self.origin.registration.as_str(),
            "client_uri": self.origin.client_uri,
            "logo_uri": self.origin.logo_uri,
            "blocked_at": self.origin.blocked_at,
            "last_used_at": self.origin.last_used_at,
        })
    }
}

const COLUMNS: &str = "id, kind, name, auth_method, secret_hash, jwks, jwks_uri, assertion_alg, \
     redirect_uris, post_logout_redirect_uris, grant_types, scopes, audiences, created_at, \
     id_token_claims, id_token_alg, registration, client_uri, logo_uri, metadata_expires_at, \
     blocked_at, last_used_at, require_dpop";

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
            require_dpop: r.get(22)?,
            origin: ClientOrigin {
                registration: {
                    let reg: String = r.get(16)?;
                    Registration::parse(&reg)
                        .ok_or_else(|| StoreError::Corrupt(format!("registration {reg}")))?
                },
                client_uri: r.get(17)?,
                logo_uri: r.get(18)?,
                metadata_expires_at: r.get(19)?,
                blocked_at: r.get(20)?,
                last_used_at: r.get(21)?,
            },
        })
    }
}

pub fn insert(conn: &dyn Db, c: &Client) -> StoreResult<()> {
    insert_row(conn, c, "")?;
    Ok(())
}

/// INSERT every column of `c`, with `tail` after the VALUES (e.g. an
/// ON CONFLICT clause). Returns the rows inserted.
fn insert_row(conn: &dyn Db, c: &Client, tail: &str) -> StoreResult<usize> {
    let grants: Vec<String> = c
        .grant_types
        .iter()
        .map(|g| g.as_str().to_string())
        .collect();
    conn.execute(
        &format!(
            "INSERT INTO clients ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
             ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23){tail}"
        ),
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
            c.origin.registration.as_str(),
            &c.origin.client_uri,
            &c.origin.logo_uri,
            c.origin.metadata_expires_at,
            c.origin.blocked_at,
            c.origin.last_used_at,
            c.require_dpop,
        ],
    )
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

/// Store what a client's metadata document says, as a client registered by
/// no one: a new row, or the cached copy of an earlier fetch refreshed
/// (never a row the operator registered, never a blocked one; `created_at`
/// stays the first fetch's). Returns true when the row is new.
pub fn store_described(conn: &dyn Db, c: &Client) -> StoreResult<bool> {
    let inserted = insert_row(conn, c, " ON CONFLICT (id) DO NOTHING")? == 1;
    if !inserted {
        conn.execute(
            "UPDATE clients SET name = ?2, auth_method = ?3, jwks = ?4, jwks_uri = ?5, \
             assertion_alg = ?6, redirect_uris = ?7, post_logout_redirect_uris = ?8, \
             id_token_alg = ?9, client_uri = ?10, logo_uri = ?11, metadata_expires_at = ?12, \
             require_dpop = ?13 \
             WHERE id = ?1 AND registration = 'metadata_document' AND blocked_at IS NULL",
            args![
                &c.id,
                &c.name,
                c.auth_method.as_str(),
                &c.jwks,
                &c.jwks_uri,
                &c.assertion_alg,
                to_json_list(&c.redirect_uris),
                to_json_list(&c.post_logout_redirect_uris),
                c.id_token_alg.as_str(),
                &c.origin.client_uri,
                &c.origin.logo_uri,
                c.origin.metadata_expires_at,
                c.require_dpop,
            ],
        )?;
    }
    Ok(inserted)
}

/// Block a client: from now on unknown to every endpoint. A metadata
/// document URL never seen before gets a blocked row, so it is refused
/// before its first use. Returns false when it was blocked already.
pub fn block(conn: &dyn Db, id: &str, now: i64) -> StoreResult<bool> {
    let inserted = conn.execute(
        "INSERT INTO clients (id, kind, name, auth_method, created_at, registration, blocked_at) \
         VALUES (?1, 'agent', ?1, 'none', ?2, 'metadata_document', ?2) ON CONFLICT (id) DO NOTHING",
        args![id, now],
    )? == 1;
    Ok(inserted
        || conn.execute(
            "UPDATE clients SET blocked_at = ?2 WHERE id = ?1 AND blocked_at IS NULL",
            args![id, now],
        )? == 1)
}

/// Note that a dynamically registered client was used, at most once per
/// `interval` seconds (a write per request would cost every token request).
pub fn touch(conn: &dyn Db, id: &str, now: i64, interval: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE clients SET last_used_at = ?2 WHERE id = ?1 AND registration = 'dynamic' \
         AND (last_used_at IS NULL OR last_used_at <= ?3)",
        args![id, now, now - interval],
    )?;
    Ok(())
}

/// Dynamically registered clients unused since `before`, at most `limit`.
pub fn unused_dynamic(conn: &dyn Db, before: i64, limit: i64) -> StoreResult<Vec<String>> {
    conn.query(
        "SELECT id FROM clients WHERE registration = 'dynamic' AND last_used_at < ?1 \
         ORDER BY last_used_at LIMIT ?2",
        args![before, limit],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Forget cached metadata-document clients nobody uses: expired before
/// `before`, not blocked, and with no grant or consent hanging from them
/// (so nothing issued to them is lost). At most `limit`. Anyone can make
/// deputy cache a document by naming its URL; this keeps those rows bounded.
pub fn forget_unused_documents(conn: &dyn Db, before: i64, limit: i64) -> StoreResult<usize> {
    conn.execute(
        "DELETE FROM clients WHERE id IN (SELECT c.id FROM clients c \
         WHERE c.registration = 'metadata_document' AND c.blocked_at IS NULL \
         AND c.metadata_expires_at < ?1 \
         AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.client_id = c.id) \
         AND NOT EXISTS (SELECT 1 FROM consent_scopes s WHERE s.client_id = c.id) \
         ORDER BY c.metadata_expires_at LIMIT ?2)",
        args![before, limit],
    )
}
