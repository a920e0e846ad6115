//! What a token's issuance depends on, re-checked inside the transaction that
//! records it. The request checks these earlier on a reader thread; a
//! revocation, a disabled person or a removed client committed in between
//! would otherwise leave a token that no cascade saw (it was not yet written)
//! and that no check refused (it had already passed). Writes are serialised,
//! so a check here and a cascade elsewhere can no longer interleave.

use super::db::Db;
use super::StoreResult;

/// Everything the new token hangs from.
#[derive(Debug, Default, Clone)]
pub struct Dependencies {
    /// The client the token is issued to.
    pub client_id: String,
    /// The person the token is for, if any.
    pub person: Option<String>,
    /// The grant (consent or service grant) it is issued under, if any.
    pub grant_id: Option<String>,
    /// Tokens it is derived from (subject and actor tokens of an exchange).
    pub parents: Vec<String>,
    /// The delegation rule that allows it (rules are never edited in place:
    /// a changed rule is a new id, so existing means unchanged).
    pub rule_id: Option<String>,
}

/// Which dependency is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapsed {
    Client,
    Person,
    Grant,
    Rule,
    Parent,
}

/// The family of a refresh token still hangs from a live grant, an active
/// person and a registered client (the one definition, for the refresh grant
/// and for introspection).
pub fn family_live(conn: &dyn Db, rec: &super::refresh::RefreshRecord) -> StoreResult<bool> {
    still_live(
        conn,
        &Dependencies {
            client_id: rec.client_id.clone(),
            person: Some(rec.user_id.clone()),
            grant_id: Some(rec.family_id.clone()),
            ..Dependencies::default()
        },
    )
}

/// True when every dependency is still live: the client registered, the
/// person not disabled, the grant and every parent not revoked, the rule there.
pub fn still_live(conn: &dyn Db, d: &Dependencies) -> StoreResult<bool> {
    Ok(lapsed(conn, d)?.is_none())
}

/// The first dependency that is no longer live, if any.
pub fn lapsed(conn: &dyn Db, d: &Dependencies) -> StoreResult<Option<Lapsed>> {
    const CLIENT: &str = "SELECT 1 FROM clients WHERE id = ?1 AND blocked_at IS NULL";
    const PERSON: &str = "SELECT 1 FROM users WHERE id = ?1 AND disabled_at IS NULL";
    const GRANT: &str = "SELECT 1 FROM grants WHERE id = ?1 AND revoked_at IS NULL";
    const PARENT: &str = "SELECT 1 FROM tokens WHERE jti = ?1 AND revoked_at IS NULL";
    const RULE: &str = "SELECT 1 FROM delegation_rules WHERE id = ?1";
    let checks = [
        Some((Lapsed::Client, CLIENT, d.client_id.as_str())),
        d.person.as_deref().map(|p| (Lapsed::Person, PERSON, p)),
        d.grant_id.as_deref().map(|g| (Lapsed::Grant, GRANT, g)),
        d.rule_id.as_deref().map(|r| (Lapsed::Rule, RULE, r)),
    ]
    .into_iter()
    .flatten()
    .chain(
        d.parents
            .iter()
            .map(|j| (Lapsed::Parent, PARENT, j.as_str())),
    )
    .collect::<Vec<_>>();
    // One statement for every check (one round trip on PostgreSQL).
    let sql = format!(
        "SELECT {}",
        checks
            .iter()
            .enumerate()
            .map(|(i, (_, sql, _))| format!(
                "EXISTS ({})",
                sql.replace("?1", &format!("?{}", i + 1))
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let args: Vec<crate::store::db::Value> =
        checks.iter().map(|(_, _, arg)| (*arg).into()).collect();
    let Some(row) = conn.query_one(&sql, &args)? else {
        return Err(crate::store::StoreError::Corrupt(
            "a liveness check returned no row".into(),
        ));
    };
    for (i, (what, _, _)) in checks.iter().enumerate() {
        if !row.get::<bool>(i)? {
            return Ok(Some(*what));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteDb;
    use rusqlite::Connection;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE clients (id TEXT PRIMARY KEY, blocked_at INTEGER);
             CREATE TABLE users (id TEXT PRIMARY KEY, disabled_at INTEGER);
             CREATE TABLE grants (id TEXT PRIMARY KEY, revoked_at INTEGER);
             CREATE TABLE tokens (jti TEXT PRIMARY KEY, revoked_at INTEGER);
             CREATE TABLE delegation_rules (id TEXT PRIMARY KEY);
             INSERT INTO delegation_rules VALUES ('r1');
             INSERT INTO clients VALUES ('c', NULL);
             INSERT INTO users VALUES ('alice', NULL), ('bob', 5);
             INSERT INTO grants VALUES ('g1', NULL), ('g2', 5);
             INSERT INTO tokens VALUES ('t1', NULL), ('t2', 5);",
        )
        .unwrap();
        c
    }

    fn deps(
        client: &str,
        person: Option<&str>,
        grant: Option<&str>,
        parents: &[&str],
    ) -> Dependencies {
        Dependencies {
            client_id: client.into(),
            person: person.map(Into::into),
            grant_id: grant.map(Into::into),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            rule_id: None,
        }
    }

    #[test]
    fn each_dependency_can_refuse() {
        let conn = db();
        let c = SqliteDb(&conn);
        let c: &dyn Db = &c;
        assert!(still_live(c, &deps("c", Some("alice"), Some("g1"), &["t1"])).unwrap());
        assert!(still_live(c, &deps("c", None, None, &[])).unwrap());
        assert!(!still_live(c, &deps("gone", None, None, &[])).unwrap());
        assert!(!still_live(c, &deps("c", Some("bob"), None, &[])).unwrap());
        assert!(!still_live(c, &deps("c", Some("nobody"), None, &[])).unwrap());
        assert!(!still_live(c, &deps("c", None, Some("g2"), &[])).unwrap());
        assert!(!still_live(c, &deps("c", None, None, &["t1", "t2"])).unwrap());
        assert!(!still_live(c, &deps("c", None, None, &["unknown"])).unwrap());
        let ruled = |r: &str| Dependencies {
            rule_id: Some(r.into()),
            ..deps("c", None, None, &[])
        };
        assert!(still_live(c, &ruled("r1")).unwrap());
        assert_eq!(lapsed(c, &ruled("removed")).unwrap(), Some(Lapsed::Rule));
        assert_eq!(
            lapsed(c, &deps("c", None, Some("g2"), &["t1"])).unwrap(),
            Some(Lapsed::Grant)
        );
    }
}
