//! Every token deputy issues, the grants they hang from, and used assertion ids.

use super::db::{Db, Row};
use super::{StoreError, StoreResult};
use crate::args;
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
    /// RFC 9449 §6: the thumbprint of the key a DPoP-bound token is bound to.
    pub cnf_jkt: Option<String>,
}

impl TokenRecord {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// The recursive step of a lineage walk over `tree(jti)`: tokens derived
/// from a token in the tree, through either of their parents (one reference
/// to `tree`, as PostgreSQL requires of a recursive term).
const CHILDREN: &str = "SELECT t.jti FROM tokens t JOIN tree \
     ON t.parent_jti = tree.jti OR t.actor_token_jti = tree.jti";

const COLUMNS: &str = "jti, kind, subject, subject_kind, client_id, client_kind, actor_chain, \
    audience, scope, task, issued_at, expires_at, parent_jti, grant_id, grant_type, rule_id, \
    revoked_at, revoked_reason, may_act, actor_token_jti, cnf_jkt";

fn from_row(r: &Row) -> StoreResult<TokenRecord> {
    let kind: String = r.get(1)?;
    let subject_kind: String = r.get(3)?;
    let kind =
        TokenKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("token kind {kind}")))?;
    let subject_kind = SubjectKind::parse(&subject_kind)
        .ok_or_else(|| StoreError::Corrupt(format!("subject kind {subject_kind}")))?;
    Ok(TokenRecord {
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
        cnf_jkt: r.get(20)?,
    })
}

pub fn insert(conn: &dyn Db, t: &TokenRecord) -> StoreResult<()> {
    conn.defer(
        &format!(
            "INSERT INTO tokens ({COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
        ),
        args![
            &t.jti,
            t.kind.as_str(),
            &t.subject,
            t.subject_kind.as_str(),
            &t.client_id,
            &t.client_kind,
            &t.actor_chain,
            &t.audience,
            &t.scope,
            &t.task,
            t.issued_at,
            t.expires_at,
            &t.parent_jti,
            &t.grant_id,
            &t.grant_type,
            &t.rule_id,
            t.revoked_at,
            &t.revoked_reason,
            &t.may_act,
            &t.actor_token_jti,
            &t.cnf_jkt,
        ],
    )?;
    Ok(())
}

pub fn get(conn: &dyn Db, jti: &str) -> StoreResult<Option<TokenRecord>> {
    conn.query_one(
        &format!("SELECT {COLUMNS} FROM tokens WHERE jti = ?1"),
        args![jti],
    )?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Token records by `jti`, in the order given (a `jti` that vanished meanwhile
/// means the store is damaged).
pub(crate) fn records(conn: &dyn Db, jtis: &[String]) -> StoreResult<Vec<TokenRecord>> {
    jtis.iter()
        .map(|j| {
            get(conn, j)?.ok_or_else(|| StoreError::Corrupt(format!("token {j} vanished mid-read")))
        })
        .collect()
}

/// Token records matching `condition` (SQL over `tokens` and `args`),
/// read with the one row decoder; `rest` follows the WHERE clause
/// (ORDER BY, LIMIT). `prefix` goes before the SELECT (a `tree` CTE).
pub(crate) fn records_where(
    conn: &dyn Db,
    prefix: &str,
    condition: &str,
    rest: &str,
    args: &[super::db::Value],
) -> StoreResult<Vec<TokenRecord>> {
    conn.query(
        &format!("{prefix} SELECT {COLUMNS} FROM tokens WHERE {condition} {rest}"),
        args,
    )?
    .iter()
    .map(from_row)
    .collect()
}

/// The lineage walk, defined once: `tree(jti)` holds the tokens matching
/// `roots` (a condition on `tokens` over `?1`, the root value, and `?2`, a
/// person or NULL) and every token derived from them at any depth, through
/// either parent. UNION (not UNION ALL) visits each token once, so even a
/// damaged, cyclic lineage terminates.
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
/// statement (`?1` the root value, `?2` a person or NULL, `?3` now, `?4` the
/// reason). Returns how many tokens changed state (a repeat is 0).
pub(crate) fn revoke_tree_where(
    conn: &dyn Db,
    roots: &str,
    root: &str,
    person: Option<&str>,
    now: i64,
    reason: &str,
) -> StoreResult<usize> {
    conn.execute(
        &format!(
            "{} UPDATE tokens SET revoked_at = ?3, revoked_reason = ?4 \
             WHERE jti IN (SELECT jti FROM tree) AND revoked_at IS NULL",
            tree(&format!(
                "({roots}) AND (CAST(?2 AS TEXT) IS NULL OR subject = ?2)"
            ))
        ),
        args![root, person, now, reason],
    )
}

/// Revoke a token and every token derived from it, at any depth, in one
/// statement. Returns how many tokens changed state.
pub fn revoke_tree(conn: &dyn Db, jti: &str, now: i64, reason: &str) -> StoreResult<usize> {
    revoke_tree_where(conn, "jti = ?1", jti, None, now, reason)
}

/// Everything issued to or for a client, and everything derived from it.
pub fn revoke_client(conn: &dyn Db, client_id: &str, now: i64, reason: &str) -> StoreResult<usize> {
    revoke_tree_where(conn, "client_id = ?1", client_id, None, now, reason)
}

/// Everything whose subject is this person or service, and everything derived from it.
pub fn revoke_subject(conn: &dyn Db, subject: &str, now: i64, reason: &str) -> StoreResult<usize> {
    revoke_tree_where(conn, "subject = ?1", subject, None, now, reason)
}

/// Everything issued under a grant, and everything derived from it.
pub(super) fn revoke_grant(
    conn: &dyn Db,
    grant_id: &str,
    now: i64,
    reason: &str,
) -> StoreResult<usize> {
    conn.execute(
        "UPDATE grants SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
        args![grant_id, now],
    )?;
    revoke_tree_where(conn, "grant_id = ?1", grant_id, None, now, reason)
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

pub fn insert_grant(conn: &dyn Db, g: &GrantRecord) -> StoreResult<()> {
    conn.defer(
        "INSERT INTO grants (id, grant_type, subject, client_id, scope, auth_time, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![
            &g.id,
            &g.grant_type,
            &g.subject,
            &g.client_id,
            &g.scope,
            g.auth_time,
            g.created_at
        ],
    )?;
    Ok(())
}

/// RFC 7523 §3 item 7: record an assertion's `jti` as used. One statement
/// under a primary key, so of N concurrent attempts exactly one succeeds,
/// across restarts and instances. Returns false when the `jti` was already
/// used (a replay). `ON CONFLICT DO NOTHING`, not an error: on PostgreSQL an
/// error would end the whole transaction.
pub fn consume_assertion_jti(
    conn: &dyn Db,
    client_id: &str,
    jti: &str,
    expires_at: i64,
) -> StoreResult<bool> {
    Ok(conn.execute(
        "INSERT INTO used_assertions (client_id, jti, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (client_id, jti) DO NOTHING",
        args![client_id, jti, expires_at],
    )? == 1)
}

/// Forget assertion ids whose assertions can no longer be accepted anyway.
pub fn purge_used_assertions(conn: &dyn Db, older_than: i64) -> StoreResult<usize> {
    conn.execute(
        "DELETE FROM used_assertions WHERE expires_at < ?1",
        args![older_than],
    )
}
