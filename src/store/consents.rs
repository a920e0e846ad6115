//! Remembered consent: each scope a person allowed a client at one resource
//! (RFC 8707 §2: a consent for one API is not a consent for another).

use super::db::Db;
use super::StoreResult;
use crate::args;

/// True when the person allowed this client every scope asked for, at this
/// resource. Scopes allowed at another resource do not count.
pub fn covers(
    conn: &dyn Db,
    user_id: &str,
    client_id: &str,
    resource: &str,
    scopes: &[String],
) -> StoreResult<bool> {
    if scopes.is_empty() {
        return Ok(false);
    }
    for s in scopes {
        let allowed = conn.exists(
            "SELECT 1 FROM consent_scopes \
             WHERE user_id = ?1 AND client_id = ?2 AND resource = ?3 AND scope = ?4",
            args![user_id, client_id, resource, s],
        )?;
        if !allowed {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Remember that the person allowed these scopes at this resource.
pub fn remember(
    conn: &dyn Db,
    user_id: &str,
    client_id: &str,
    resource: &str,
    scopes: &[String],
    now: i64,
) -> StoreResult<()> {
    for s in scopes {
        conn.execute(
            "INSERT INTO consent_scopes (user_id, client_id, resource, scope, granted_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (user_id, client_id, resource, scope) DO UPDATE SET granted_at = excluded.granted_at",
            args![user_id, client_id, resource, s, now],
        )?;
    }
    Ok(())
}

/// Forget everything a person allowed a client. True when there was some.
pub fn withdraw(conn: &dyn Db, user_id: &str, client_id: &str) -> StoreResult<bool> {
    Ok(conn.execute(
        "DELETE FROM consent_scopes WHERE user_id = ?1 AND client_id = ?2",
        args![user_id, client_id],
    )? > 0)
}

/// Forget everything anyone allowed a client (client removed, or every
/// person's access for an actor revoked). Returns how many people it affected.
pub fn withdraw_all_for_client(conn: &dyn Db, client_id: &str) -> StoreResult<usize> {
    let people: i64 = conn.scalar(
        "SELECT count(DISTINCT user_id) FROM consent_scopes WHERE client_id = ?1",
        args![client_id],
    )?;
    conn.execute(
        "DELETE FROM consent_scopes WHERE client_id = ?1",
        args![client_id],
    )?;
    Ok(usize::try_from(people).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::sqlite::SqliteDb;
    use rusqlite::Connection;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE consent_scopes (user_id TEXT, client_id TEXT, resource TEXT, scope TEXT, \
             granted_at INTEGER, PRIMARY KEY (user_id, client_id, resource, scope))",
        )
        .unwrap();
        c
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn consent_is_per_resource_and_scope() {
        let conn = db();
        let c = SqliteDb(&conn);
        let c: &dyn Db = &c;
        remember(c, "alice", "app", "R1", &s(&["a"]), 1).unwrap();
        remember(c, "alice", "app", "R2", &s(&["b"]), 1).unwrap();
        assert!(covers(c, "alice", "app", "R1", &s(&["a"])).unwrap());
        assert!(covers(c, "alice", "app", "R2", &s(&["b"])).unwrap());
        // b was allowed at R2 only: asking for it at R1 is not covered.
        assert!(!covers(c, "alice", "app", "R1", &s(&["b"])).unwrap());
        assert!(!covers(c, "alice", "app", "R1", &s(&["a", "b"])).unwrap());
        assert!(!covers(c, "bob", "app", "R1", &s(&["a"])).unwrap());
        assert!(!covers(c, "alice", "other", "R1", &s(&["a"])).unwrap());
        assert!(!covers(c, "alice", "app", "R1", &[]).unwrap());
        assert!(withdraw(c, "alice", "app").unwrap());
        assert!(!covers(c, "alice", "app", "R1", &s(&["a"])).unwrap());
        assert!(!withdraw(c, "alice", "app").unwrap());
    }
}
