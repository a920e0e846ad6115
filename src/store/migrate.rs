//! Schema migrations from `migrations/`, applied in order, each recorded once.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{StoreError, StoreResult};

/// (version, name, SQL). Append only; never edit a migration that has shipped.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_init",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_people",
        include_str!("../../migrations/0002_people.sql"),
    ),
    (
        3,
        "0003_delegation",
        include_str!("../../migrations/0003_delegation.sql"),
    ),
    (
        4,
        "0004_partial_indexes",
        include_str!("../../migrations/0004_partial_indexes.sql"),
    ),
    (
        5,
        "0005_may_act",
        include_str!("../../migrations/0005_may_act.sql"),
    ),
    (
        6,
        "0006_actor_token",
        include_str!("../../migrations/0006_actor_token.sql"),
    ),
    (
        7,
        "0007_audit_no_replace",
        include_str!("../../migrations/0007_audit_no_replace.sql"),
    ),
    (
        8,
        "0008_session_sid",
        include_str!("../../migrations/0008_session_sid.sql"),
    ),
];

pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// The schema version recorded in the database (0 for a new database).
pub fn current_version(conn: &Connection) -> StoreResult<i64> {
    let has_table: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if has_table.is_none() {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?)
}

/// Apply every migration the database lacks. Returns the versions applied.
/// A database newer than this binary is refused rather than touched.
pub fn migrate(conn: &mut Connection) -> StoreResult<Vec<i64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let current = current_version(&tx)?;
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::Schema(format!(
            "database schema version {current} is newer than this deputy supports ({latest}); \
             use a newer deputy"
        )));
    }
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Schema(format!("migration {name} failed: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![version, name, now],
        )?;
        applied.push(*version);
    }
    tx.commit()?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_once_and_records_each_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(migrate(&mut conn).unwrap().is_empty());
        let n: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
            [],
        )
        .unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("newer than this deputy supports"), "{err}");
    }

    #[test]
    fn audit_trail_is_append_only() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO audit_events (at, event, mode, outcome) VALUES (1, 'x', 'system', 'ok')",
            [],
        )
        .unwrap();
        assert!(conn
            .execute("UPDATE audit_events SET event = 'y'", [])
            .is_err());
        assert!(conn.execute("DELETE FROM audit_events", []).is_err());
        // REPLACE deletes the old row without DELETE triggers: refused too.
        let id: i64 = conn
            .query_row("SELECT id FROM audit_events", [], |r| r.get(0))
            .unwrap();
        for verb in ["REPLACE", "INSERT OR REPLACE"] {
            assert!(conn
                .execute(
                    &format!(
                        "{verb} INTO audit_events (id, at, event, mode, outcome) \
                         VALUES (?1, 2, 'forged', 'system', 'ok')"
                    ),
                    [id],
                )
                .is_err());
        }
        let event: String = conn
            .query_row("SELECT event FROM audit_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(event, "x");
        // New events still go in.
        conn.execute(
            "INSERT INTO audit_events (at, event, mode, outcome) VALUES (3, 'z', 'system', 'ok')",
            [],
        )
        .unwrap();
    }
}
