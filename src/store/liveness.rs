//! What a token's issuance depends on, re-checked inside the transaction that
//! records it. The request checks these earlier on a reader thread; a
//! revocation, a disabled person or a removed client committed in between
//! would otherwise leave a token that no cascade saw (it was not yet written)
//! and that no check refused (it had already passed). Writes are serialised,
//! so a check here and a cascade elsewhere can no longer interleave.

use rusqlite::{Connection, OptionalExtension};

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
}

fn exists(conn: &Connection, sql: &str, arg: &str) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([arg], |_| Ok(()))
        .optional()?
        .is_some())
}

/// True when every dependency is still live: the client registered, the
/// person not disabled, the grant and every parent not revoked.
pub fn still_live(conn: &Connection, d: &Dependencies) -> StoreResult<bool> {
    const CLIENT: &str = "SELECT 1 FROM clients WHERE id = ?1";
    const PERSON: &str = "SELECT 1 FROM users WHERE id = ?1 AND disabled_at IS NULL";
    const GRANT: &str = "SELECT 1 FROM grants WHERE id = ?1 AND revoked_at IS NULL";
    const PARENT: &str = "SELECT 1 FROM tokens WHERE jti = ?1 AND revoked_at IS NULL";
    let checks = [
        Some((CLIENT, d.client_id.as_str())),
        d.person.as_deref().map(|p| (PERSON, p)),
        d.grant_id.as_deref().map(|g| (GRANT, g)),
    ]
    .into_iter()
    .flatten()
    .chain(d.parents.iter().map(|j| (PARENT, j.as_str())));
    for (sql, arg) in checks {
        if !exists(conn, sql, arg)? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE clients (id TEXT PRIMARY KEY);
             CREATE TABLE users (id TEXT PRIMARY KEY, disabled_at INTEGER);
             CREATE TABLE grants (id TEXT PRIMARY KEY, revoked_at INTEGER);
             CREATE TABLE tokens (jti TEXT PRIMARY KEY, revoked_at INTEGER);
             INSERT INTO clients VALUES ('c');
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
        }
    }

    #[test]
    fn each_dependency_can_refuse() {
        let c = db();
        assert!(still_live(&c, &deps("c", Some("alice"), Some("g1"), &["t1"])).unwrap());
        assert!(still_live(&c, &deps("c", None, None, &[])).unwrap());
        assert!(!still_live(&c, &deps("gone", None, None, &[])).unwrap());
        assert!(!still_live(&c, &deps("c", Some("bob"), None, &[])).unwrap());
        assert!(!still_live(&c, &deps("c", Some("nobody"), None, &[])).unwrap());
        assert!(!still_live(&c, &deps("c", None, Some("g2"), &[])).unwrap());
        assert!(!still_live(&c, &deps("c", None, None, &["t1", "t2"])).unwrap());
        assert!(!still_live(&c, &deps("c", None, None, &["unknown"])).unwrap());
    }
}
