//! Every token deputy issues, the grants they hang from, and used assertion ids.

use rusqlite::{named_params, params, Connection, OptionalExtension, Row};

use super::{is_unique_violation, StoreError, StoreResult};
use crate::model::{SubjectKind, TokenKind};

/// The record of one issued token: enough for introspection, revocation,
/// cascade and audit to answer without the token itself.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub jti: String,
    pub kind: TokenKind,
    pub subject: String,
    pub subject_kind: SubjectKind,
    pub client_id: String,
    pub client_kind: String,
    /// The `act` claim (JSON), for delegation tokens.
    pub actor_chain: Option<String>,
    pub audience: String,
    pub scope: String,
    pub task: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub parent_jti: Option<String>,
    pub grant_id: Option<String>,
    pub grant_type: String,
    pub rule_id: Option<String>,
    /// RFC 8693 §4.4: the only client that may exchange this token next.
    pub may_act: Option<String>,
    /// RFC 8693 §2.1: the actor's own token a broker presented; a second parent.
    pub actor_token_jti: Option<String>,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
}

impl TokenRecord {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// The recursive step of a lineage walk over `tree(jti)`: tokens derived
/// from a token in the tree, through either of their parents.
pub(crate) const CHILDREN: &str =
    "SELECT t.jti FROM tokens t JOIN tree ON t.parent_jti = tree.jti \
     UNION SELECT t.jti FROM tokens t JOIN tree ON t.actor_token_jti = tree.jti";

const COLUMNS: &str = "jti, kind, subject, subject_kind, client_id, client_kind, actor_chain, \
    audience, scope, task, issued_at, expires_at, parent_jti, grant_id, grant_type, rule_id, \
    revoked_at, revoked_reason, may_act, actor_token_jti";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<TokenRecord, StoreError>> {
    let kind: String = r.get(1)?;
    let subject_kind: String = r.get(3)?;
    let Some(kind) = TokenKind::parse(&kind) else {
        return Ok(Err(StoreError::Corrupt(format!("token kind {kind}"))));
    };
    let Some(subject_kind) = SubjectKind::parse(&subject_kind) else {
        return Ok(Err(StoreError::Corrupt(format!(
            "subject kind {subject_kind}"
        ))));
    };
    Ok(Ok(TokenRecord {
        jti: r.get(0)?,
        kind,
        subject: r.get(2)?,
        subject_kind,
        client_id: r.get(4)?,
        client_kind: r.get(5)?,
        actor_chain: r.get(6)?,
        audience: r.get(7)?,
        scope: r.get(8)?,
        task: r.get(9)?,
        issued_at: r.get(10)?,
        expires_at: r.get(11)?,
        parent_jti: r.get(12)?,
        grant_id: r.get(13)?,
        grant_type: r.get(14)?,
        rule_id: r.get(15)?,
        revoked_at: r.get(16)?,
        revoked_reason: r.get(17)?,
        may_act: r.get(18)?,
        actor_token_jti: r.get(19)?,
    }))
}

pub fn insert(conn: &Connection, t: &TokenRecord) -> StoreResult<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO tokens ({COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
    ))?
    .execute(params![
        t.jti,
        t.kind.as_str(),
        t.subject,
        t.subject_kind.as_str(),
        t.client_id,
        t.client_kind,
        t.actor_chain,
        t.audience,
        t.scope,
        t.task,
        t.issued_at,
        t.expires_at,
        t.parent_jti,
        t.grant_id,
        t.grant_type,
        t.rule_id,
        t.revoked_at,
        t.revoked_reason,
        t.may_act,
        t.actor_token_jti,
    ])?;
    Ok(())
}

pub fn get(conn: &Connection, jti: &str) -> StoreResult<Option<TokenRecord>> {
    match conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM tokens WHERE jti = ?1"))?
        .query_row([jti], from_row)
        .optional()?
    {
        Some(t) => Ok(Some(t?)),
        None => Ok(None),
    }
}

/// The lineage walk, defined once: `tree(jti)` holds the tokens matching
/// `roots` (a condition on `tokens`) and every token derived from them at any
/// depth, through either parent. UNION (not UNION ALL) visits each token
/// once, so even a damaged, cyclic lineage terminates.
pub(crate) fn tree(roots: &str) -> String {
    format!(
        "WITH RECURSIVE tree(jti) AS (
             SELECT jti FROM tokens WHERE {roots}
             UNION
             {CHILDREN}
         )"
    )
}

/// The revocation cascade, defined once: revoke `tree(roots)` in one
/// statement. `params` names `:now`, `:reason` and whatever `roots` uses.
/// Returns how many tokens changed state (a repeat is 0).
pub(crate) fn revoke_tree_where(
    conn: &Connection,
    roots: &str,
    params: &[(&str, &dyn rusqlite::ToSql)],
) -> StoreResult<usize> {
    Ok(conn
        .prepare_cached(&format!(
            "{} UPDATE tokens SET revoked_at = :now, revoked_reason = :reason \
             WHERE jti IN tree AND revoked_at IS NULL",
            tree(roots)
        ))?
        .execute(params)?)
}

fn revoke_where(
    conn: &Connection,
    roots: &str,
    root: &str,
    now: i64,
    reason: &str,
) -> StoreResult<usize> {
    revoke_tree_where(
        conn,
        roots,
        named_params! {":root": root, ":now": now, ":reason": reason},
    )
}

/// Revoke a token and every token derived from it, at any depth, in one
/// statement. Returns how many tokens changed state.
pub fn revoke_tree(conn: &Connection, jti: &str, now: i64, reason: &str) -> StoreResult<usize> {
    revoke_where(conn, "jti = :root", jti, now, reason)
}

/// Everything issued to or for a client, and everything derived from it.
pub fn revoke_client(
    conn: &Connection,
    client_id: &str,
    now: i64,
    reason: &str,
) -> StoreResult<usize> {
    revoke_where(conn, "client_id = :root", client_id, now, reason)
}

/// Everything whose subject is this person or service, and everything derived from it.
pub fn revoke_subject(
    conn: &Connection,
    subject: &str,
    now: i64,
    reason: &str,
) -> StoreResult<usize> {
    revoke_where(conn, "subject = :root", subject, now, reason)
}

/// Everything issued under a grant, and everything derived from it.
pub(super) fn revoke_grant(
    conn: &Connection,
    grant_id: &str,
    now: i64,
    reason: &str,
) -> StoreResult<usize> {
    conn.execute(
        "UPDATE grants SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
        params![grant_id, now],
    )?;
    revoke_where(conn, "grant_id = :root", grant_id, now, reason)
}

/// A grant: the authorization tokens hang from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    pub grant_type: String,
    pub subject: String,
    pub client_id: String,
    pub scope: String,
    pub auth_time: Option<i64>,
    pub created_at: i64,
}

pub fn insert_grant(conn: &Connection, g: &GrantRecord) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO grants (id, grant_type, subject, client_id, scope, auth_time, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        g.id,
        g.grant_type,
        g.subject,
        g.client_id,
        g.scope,
        g.auth_time,
        g.created_at
    ])?;
    Ok(())
}

/// RFC 7523 §3 item 7: record an assertion's `jti` as used. One INSERT under a
/// primary key, so of N concurrent attempts exactly one succeeds, across restarts.
/// Returns false when the `jti` was already used (a replay).
pub fn consume_assertion_jti(
    conn: &Connection,
    client_id: &str,
    jti: &str,
    expires_at: i64,
) -> StoreResult<bool> {
    match conn
        .prepare_cached(
            "INSERT INTO used_assertions (client_id, jti, expires_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![client_id, jti, expires_at])
    {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Forget assertion ids whose assertions can no longer be accepted anyway.
pub fn purge_used_assertions(conn: &Connection, older_than: i64) -> StoreResult<usize> {
    Ok(conn.execute(
        "DELETE FROM used_assertions WHERE expires_at < ?1",
        [older_than],
    )?)
}
