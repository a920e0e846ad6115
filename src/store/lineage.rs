//! SQL for the admin views and the admin cascade: which tokens match a filter,
//! a token's ancestors and descendants (through `parent_jti` and
//! `actor_token_jti`, a brokered token's second parent), the grants tokens
//! hang from, and tokens that name an actor anywhere in their `act` chain.
//!
//! Queries here return `jti`s and grant ids; full records are read with
//! `tokens::get`, so there is one row decoder for tokens.

use super::db::{Db, Dialect, Value};
use super::tokens::{self, TokenRecord};
use super::{StoreError, StoreResult};
use crate::args;

/// True when the `act` chain in `tokens.actor_chain` names actor `?N`
/// anywhere: as `sub` at the top level or in any nested `act`
/// (RFC 8693 §4.1). JSON-aware, so spacing and escaping in the stored text,
/// and LIKE wildcards in the name, cannot widen or narrow the match.
fn names_actor(dialect: Dialect, param: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!(
            "EXISTS (SELECT 1 FROM json_tree(tokens.actor_chain) AS j \
             WHERE j.key = 'sub' AND j.type = 'text' AND j.atom = {param} \
             AND replace(j.path, '.act', '') = '$')"
        ),
        // Follow `act` only, level by level, as the SQLite form's path test does.
        Dialect::Postgres => format!(
            "EXISTS (WITH RECURSIVE chain(node) AS ( \
                 SELECT tokens.actor_chain::jsonb WHERE tokens.actor_chain IS NOT NULL \
                 UNION ALL SELECT node -> 'act' FROM chain WHERE node -> 'act' IS NOT NULL) \
             SELECT 1 FROM chain WHERE node ->> 'sub' = {param})"
        ),
    }
}

/// Filters for listing token records; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFilter {
    pub sub: Option<String>,
    pub client_id: Option<String>,
    /// Matches what an actor can use: tokens issued to it (it presents them),
    /// naming it anywhere in the `act` chain, or addressed to it.
    pub actor: Option<String>,
    pub aud: Option<String>,
    /// `Some(true)`: not revoked and not expired at `now`; `Some(false)`: the rest.
    pub active: Option<bool>,
    pub limit: i64,
}

/// Token records matching `f`, oldest first (newest last).
pub fn list(conn: &dyn Db, f: &TokenFilter, now: i64) -> StoreResult<Vec<TokenRecord>> {
    let sql = format!(
        "SELECT jti FROM tokens \
         WHERE (CAST(?1 AS TEXT) IS NULL OR subject = ?1) AND (CAST(?2 AS TEXT) IS NULL OR client_id = ?2) \
         AND (CAST(?3 AS TEXT) IS NULL OR {}) AND (CAST(?4 AS TEXT) IS NULL OR audience = ?4) \
         AND (CAST(?5 AS BIGINT) IS NULL \
              OR (?5 = 1 AND revoked_at IS NULL AND expires_at > ?6) \
              OR (?5 = 0 AND (revoked_at IS NOT NULL OR expires_at <= ?6))) \
         ORDER BY issued_at, jti LIMIT ?7",
        can_act_on(conn.dialect(), "?3")
    );
    let active = f.active.map(i64::from);
    let jtis = strings(
        conn,
        &sql,
        args![&f.sub, &f.client_id, &f.actor, &f.aud, active, now, f.limit],
    )?;
    tokens::records(conn, &jtis)
}

/// Longest parent chain we follow; deputy never derives deeper, so hitting it
/// means the lineage is damaged (a cycle), which is a store failure.
const MAX_DEPTH: usize = 1000;

/// Every token `record` derives from, nearest first, up to the roots: both
/// parents of a brokered token (the subject token, `parent_jti`, and the
/// actor's own token, `actor_token_jti`) and theirs. A parent that is missing
/// ends that branch (the record says where it came from, even if that row is
/// gone).
pub fn ancestors(conn: &dyn Db, record: &TokenRecord) -> StoreResult<Vec<TokenRecord>> {
    let parents = |r: &TokenRecord| {
        [r.parent_jti.clone(), r.actor_token_jti.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
    };
    let mut out: Vec<TokenRecord> = Vec::new();
    let mut queue: std::collections::VecDeque<String> = parents(record).into();
    while let Some(jti) = queue.pop_front() {
        if out.len() >= MAX_DEPTH || jti == record.jti {
            return Err(StoreError::Corrupt(format!(
                "token lineage of {} loops",
                record.jti
            )));
        }
        if out.iter().any(|r| r.jti == jti) {
            continue; // reached through both parents
        }
        let Some(parent) = tokens::get(conn, &jti)? else {
            continue;
        };
        queue.extend(parents(&parent));
        out.push(parent);
    }
    Ok(out)
}

/// Every token derived from `jti`, at any depth, in order of issue.
pub fn descendants(conn: &dyn Db, jti: &str) -> StoreResult<Vec<TokenRecord>> {
    let jtis = strings(
        conn,
        &format!(
            "{} SELECT jti FROM tokens WHERE jti IN (SELECT jti FROM tree) AND jti <> ?1 \
             ORDER BY issued_at, jti",
            tokens::tree("parent_jti = ?1 OR actor_token_jti = ?1")
        ),
        args![jti],
    )?;
    tokens::records(conn, &jtis)
}

/// A grant row, with its revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub grant: tokens::GrantRecord,
    pub revoked_at: Option<i64>,
}

pub fn grant(conn: &dyn Db, id: &str) -> StoreResult<Option<GrantRow>> {
    conn.query_one(
        "SELECT id, grant_type, subject, client_id, scope, auth_time, created_at, revoked_at \
         FROM grants WHERE id = ?1",
        args![id],
    )?
    .map(|r| {
        Ok(GrantRow {
            grant: tokens::GrantRecord {
                id: r.get(0)?,
                grant_type: r.get(1)?,
                subject: r.get(2)?,
                client_id: r.get(3)?,
                scope: r.get(4)?,
                auth_time: r.get(5)?,
                created_at: r.get(6)?,
            },
            revoked_at: r.get(7)?,
        })
    })
    .transpose()
}

fn strings(conn: &dyn Db, sql: &str, args: &[Value]) -> StoreResult<Vec<String>> {
    conn.query(sql, args)?.iter().map(|r| r.get(0)).collect()
}

/// Grants (= refresh families) of a subject: from the grants table and from
/// refresh tokens, so a family is found even without its grant row.
pub fn grants_of_subject(conn: &dyn Db, subject: &str) -> StoreResult<Vec<String>> {
    strings(
        conn,
        "SELECT id FROM grants WHERE subject = ?1 \
         UNION SELECT family_id FROM refresh_tokens WHERE user_id = ?1 ORDER BY 1",
        args![subject],
    )
}

/// Grants (= refresh families) issued to a client.
pub fn grants_of_client(conn: &dyn Db, client_id: &str) -> StoreResult<Vec<String>> {
    strings(
        conn,
        "SELECT id FROM grants WHERE client_id = ?1 \
         UNION SELECT family_id FROM refresh_tokens WHERE client_id = ?1 ORDER BY 1",
        args![client_id],
    )
}

/// Grants (= refresh families) of one person for one client.
pub fn grants_of(conn: &dyn Db, subject: &str, client_id: &str) -> StoreResult<Vec<String>> {
    strings(
        conn,
        "SELECT id FROM grants WHERE subject = ?1 AND client_id = ?2 \
         UNION SELECT family_id FROM refresh_tokens WHERE user_id = ?1 AND client_id = ?2 \
         ORDER BY 1",
        args![subject, client_id],
    )
}

/// Refresh families of one person for one client issued for one task
/// (CIBA): stopping the task ends them.
pub fn task_grants(
    conn: &dyn Db,
    subject: &str,
    client_id: &str,
    task: &str,
) -> StoreResult<Vec<String>> {
    strings(
        conn,
        "SELECT DISTINCT family_id FROM refresh_tokens \
         WHERE user_id = ?1 AND client_id = ?2 AND task = ?3 ORDER BY 1",
        args![subject, client_id, task],
    )
}

/// How many of these grants are not yet revoked.
pub fn live_grants(conn: &dyn Db, grant_ids: &[String]) -> StoreResult<usize> {
    let mut n = 0;
    for id in grant_ids {
        if conn.exists(
            "SELECT 1 FROM grants WHERE id = ?1 AND revoked_at IS NULL",
            args![id],
        )? {
            n += 1;
        }
    }
    Ok(n)
}

/// The tokens a selector starts from, as a condition on `tokens` using `?1`
/// (the root value) and `?2` (a person, or NULL for everyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots<'a> {
    Jti,
    /// What an actor can do, for everyone or for one person (`sub`).
    Actor(Option<&'a str>),
}

impl<'a> Roots<'a> {
    fn condition(self, dialect: Dialect) -> String {
        match self {
            Roots::Jti => "jti = ?1".to_string(),
            // The same set the listing's `actor` filter shows.
            Roots::Actor(_) => can_act_on(dialect, "?1"),
        }
    }

    fn person(self) -> Option<&'a str> {
        match self {
            Roots::Actor(sub) => sub,
            Roots::Jti => None,
        }
    }
}

/// Tokens the actor in `param` can use: issued to it (it presents them),
/// naming it in their `act` chain, or addressed to it — directly or through
/// a resource that is this client — which entitles it to exchange them
/// (RFC 8693 §2.1, deputy's exchange rule 3).
fn can_act_on(dialect: Dialect, param: &str) -> String {
    format!(
        "(client_id = {param} OR {} OR audience = {param} \
         OR audience IN (SELECT id FROM resources WHERE client_id = {param}))",
        names_actor(dialect, param)
    )
}

/// Revoke, with everything derived from them, a person's tokens for one
/// task that a client can use — issued to it, naming it in their `act`
/// chain, or addressed to it (so it cannot exchange the task's token it was
/// sent for a fresh one) — in one statement. Returns how many tokens changed
/// state (a repeat is 0).
pub fn revoke_task(
    conn: &dyn Db,
    person: &str,
    client_id: &str,
    task: &str,
    now: i64,
    reason: &str,
) -> StoreResult<usize> {
    conn.execute(
        &format!(
            "{} UPDATE tokens SET revoked_at = ?3, revoked_reason = ?4 \
             WHERE jti IN (SELECT jti FROM tree) AND revoked_at IS NULL",
            tokens::tree(&format!(
                "{} AND subject = ?2 AND task = ?5",
                can_act_on(conn.dialect(), "?1")
            ))
        ),
        args![client_id, person, now, reason, task],
    )
}

/// Grants of the refresh tokens among the selected tokens and their
/// descendants: revoking a refresh token revokes its family (RFC 7009 §2.1).
pub fn refresh_grants_in_tree(conn: &dyn Db, roots: Roots, arg: &str) -> StoreResult<Vec<String>> {
    let condition = format!(
        "({}) AND (CAST(?2 AS TEXT) IS NULL OR subject = ?2)",
        roots.condition(conn.dialect())
    );
    strings(
        conn,
        &format!(
            "{} SELECT DISTINCT grant_id FROM tokens \
             WHERE jti IN (SELECT jti FROM tree) AND kind = 'refresh' AND grant_id IS NOT NULL \
             ORDER BY 1",
            tokens::tree(&condition)
        ),
        args![arg, roots.person()],
    )
}

/// Revoke the selected tokens and every token derived from them, at any
/// depth, in one statement. Returns how many tokens changed state.
pub fn revoke_tree_of(
    conn: &dyn Db,
    roots: Roots,
    arg: &str,
    now: i64,
    reason: &str,
) -> StoreResult<usize> {
    tokens::revoke_tree_where(
        conn,
        &roots.condition(conn.dialect()),
        arg,
        roots.person(),
        now,
        reason,
    )
}
