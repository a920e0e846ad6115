//! SQLite schema migrations from `migrations/sqlite/`, applied in order, each recorded once.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{StoreError, StoreResult};

/// (version, name, SQL). Append only; never edit a migration that has shipped.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "0002_people",
        include_str!("../../migrations/sqlite/0002_people.sql"),
    ),
    (
        3,
        "0003_delegation",
        include_str!("../../migrations/sqlite/0003_delegation.sql"),
    ),
    (
        4,
        "0004_partial_indexes",
        include_str!("../../migrations/sqlite/0004_partial_indexes.sql"),
    ),
    (
        5,
        "0005_may_act",
        include_str!("../../migrations/sqlite/0005_may_act.sql"),
    ),
    (
        6,
        "0006_actor_token",
        include_str!("../../migrations/sqlite/0006_actor_token.sql"),
    ),
    (
        7,
        "0007_audit_no_replace",
        include_str!("../../migrations/sqlite/0007_audit_no_replace.sql"),
    ),
    (
        8,
        "0008_session_sid",
        include_str!("../../migrations/sqlite/0008_session_sid.sql"),
    ),
    (
        9,
        "0009_consent_per_resource",
        include_str!("../../migrations/sqlite/0009_consent_per_resource.sql"),
    ),
    (
        10,
        "0010_resource_client_fk",
        include_str!("../../migrations/sqlite/0010_resource_client_fk.sql"),
    ),
    (
        11,
        "0011_shared_state",
        include_str!("../../migrations/sqlite/0011_shared_state.sql"),
    ),
    (
        12,
        "0012_relying_parties",
        include_str!("../../migrations/sqlite/0012_relying_parties.sql"),
    ),
    (
        13,
        "0013_rsa_keys",
        include_str!("../../migrations/sqlite/0013_rsa_keys.sql"),
    ),
    (
        14,
        "0014_self_registered_clients",
        include_str!("../../migrations/sqlite/0014_self_registered_clients.sql"),
    ),
    (
        15,
        "0015_dpop",
        include_str!("../../migrations/sqlite/0015_dpop.sql"),
    ),
    (
        16,
        "0016_ciba",
        include_str!("../../migrations/sqlite/0016_ciba.sql"),
    ),
    (
        17,
        "0017_refresh_task",
        include_str!("../../migrations/sqlite/0017_refresh_task.sql"),
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
        let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(migrate(&mut conn).unwrap(), all);
        assert_eq!(all, (1..=latest_version()).collect::<Vec<_>>());
        assert!(migrate(&mut conn).unwrap().is_empty());
        let n: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
    }

    /// A database as an older deputy left it: migrations up to `version`.
    fn at_version(version: i64) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for (v, name, sql) in MIGRATIONS.iter().filter(|m| m.0 <= version) {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
                params![v, name],
            )
            .unwrap();
        }
        conn
    }

    /// Migration 9: flat consents become (resource, scope) pairs only where
    /// that can be proven (one resource in the row); the rest asks again.
    #[test]
    fn old_consents_are_carried_over_conservatively() {
        let mut conn = at_version(8);
        conn.execute_batch(
            "INSERT INTO consents VALUES ('alice', 'app', 'openid notes:read resource:https://one.example', 7);
             INSERT INTO consents VALUES ('bob', 'app', 'openid a resource:https://one.example b resource:https://two.example', 8);
             INSERT INTO consents VALUES ('carol', 'app', 'openid', 9);",
        )
        .unwrap();
        assert_eq!(
            migrate(&mut conn).unwrap(),
            (9..=latest_version()).collect::<Vec<_>>()
        );
        let rows: Vec<(String, String, String, i64)> = conn
            .prepare("SELECT user_id, resource, scope, granted_at FROM consent_scopes ORDER BY user_id, scope")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let one = "https://one.example".to_string();
        assert_eq!(
            rows,
            vec![
                ("alice".into(), one.clone(), "notes:read".into(), 7),
                ("alice".into(), one, "openid".into(), 7),
            ]
        );
    }

    /// Migration 10: a resource's client is a foreign key, cleared with the
    /// client; links to clients already gone are cleared by the migration.
    #[test]
    fn resource_client_links_cannot_outlive_the_client() {
        let mut conn = at_version(9);
        conn.execute_batch(
            "INSERT INTO clients (id, kind, name, auth_method, created_at) VALUES ('api', 'service', 'api', 'none', 0);
             INSERT INTO resources VALUES ('https://api.example', 'api', 0), ('https://gone.example', 'gone', 0);
             INSERT INTO resource_scopes VALUES ('https://api.example', 'read', 'Read');",
        )
        .unwrap();
        // As the server and the CLI open it (open_connection).
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        migrate(&mut conn).unwrap();
        let link = |id: &str| -> Option<String> {
            conn.query_row("SELECT client_id FROM resources WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
        };
        assert_eq!(link("https://api.example").as_deref(), Some("api"));
        assert_eq!(link("https://gone.example"), None);
        let scopes: i64 = conn
            .query_row("SELECT count(*) FROM resource_scopes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(scopes, 1, "scopes survive the rebuild");
        conn.execute("DELETE FROM clients WHERE id = 'api'", [])
            .unwrap();
        assert_eq!(link("https://api.example"), None);
        assert!(
            conn.execute("UPDATE resources SET client_id = 'nobody'", [])
                .is_err(),
            "a link to a client that does not exist is refused"
        );
    }

    /// Migration 11: the tables instances share are typed strictly; a
    /// failure count cannot go negative and two keys cannot share a serial.
    #[test]
    fn shared_state_tables_refuse_what_does_not_fit() {
        let mut conn = at_version(10);
        assert_eq!(
            migrate(&mut conn).unwrap(),
            (11..=latest_version()).collect::<Vec<_>>()
        );
        let key = |kid: &str, serial: i64, sealed: &dyn rusqlite::ToSql| {
            conn.execute(
                "INSERT INTO signing_keys (kid, alg, serial, created_at, activates_at, \
                 public_pem, x, y, sealed_private_key) VALUES (?1, 'ES256', ?2, 1, 2, 'pem', 'x', 'y', ?3)",
                params![kid, serial, sealed],
            )
        };
        key("k1", 1, &vec![1u8, 2, 3]).unwrap();
        assert!(key("k2", 1, &vec![4u8]).is_err(), "serial is unique");
        assert!(key("k3", 3, &"not sealed").is_err(), "sealed key is a BLOB");
        conn.execute(
            "INSERT INTO login_failures (account, failures, last_failure, locked_until) \
             VALUES ('a', 1, 10, 15)",
            [],
        )
        .unwrap();
        assert!(conn
            .execute(
                "INSERT INTO login_failures (account, failures, last_failure, locked_until) \
                 VALUES ('b', -1, 10, 15)",
                [],
            )
            .is_err());
        assert!(conn
            .execute(
                "INSERT INTO login_failures (account, failures, last_failure, locked_until) \
                 VALUES ('c', 'many', 10, 15)",
                [],
            )
            .is_err());
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

    /// Migration 13: a key row keeps its columns and is a P-256 key (x, y)
    /// or an RSA key (n, e) naming its generation's P-256 key, at most one
    /// RSA key per generation.
    #[test]
    fn key_rows_are_ec_or_rsa_with_one_rsa_key_per_generation() {
        let mut conn = at_version(12);
        conn.execute(
            "INSERT INTO signing_keys (kid, alg, serial, created_at, activates_at, public_pem, \
             x, y, sealed_private_key) VALUES ('ec1', 'ES256', 1, 1, 2, 'pem', 'x', 'y', x'01')",
            [],
        )
        .unwrap();
        assert_eq!(
            migrate(&mut conn).unwrap(),
            (13..=latest_version()).collect::<Vec<_>>()
        );
        let kept: (String, String, Option<String>) = conn
            .query_row("SELECT kid, x, ec_kid FROM signing_keys", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(kept, ("ec1".into(), "x".into(), None));
        let rsa = |kid: &str, serial: i64, ec_kid: Option<&str>, x: Option<&str>| {
            conn.execute(
                "INSERT INTO signing_keys (kid, alg, serial, created_at, activates_at, public_pem, \
                 x, sealed_private_key, n, e, ec_kid) \
                 VALUES (?1, 'RS256', ?2, 1, 2, 'pem', ?4, x'01', 'n', 'AQAB', ?3)",
                params![kid, serial, ec_kid, x],
            )
        };
        assert!(rsa("r0", 2, None, None).is_err(), "names its generation");
        assert!(
            rsa("r0", 2, Some("ec1"), Some("x")).is_err(),
            "no EC members"
        );
        rsa("r1", 3, Some("ec1"), None).unwrap();
        assert!(
            rsa("r2", 4, Some("ec1"), None).is_err(),
            "one per generation"
        );
        assert!(
            conn.execute(
                "INSERT INTO signing_keys (kid, alg, serial, created_at, activates_at, \
                 public_pem, sealed_private_key) VALUES ('ec2', 'ES256', 5, 1, 2, 'pem', x'01')",
                [],
            )
            .is_err(),
            "a P-256 key has its coordinates"
        );
    }
}
