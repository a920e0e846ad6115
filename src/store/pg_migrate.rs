//! PostgreSQL schema migrations from `migrations/postgres/`, applied in order,
//! each in its own transaction and recorded once.
//!
//! Several deputy instances may start against one database at the same time
//! (`deputy migrate`, `deputy serve`): the whole run holds a session-level
//! advisory lock, so one instance migrates and the others then find nothing
//! left to do. The lock is released at the end, also when a migration fails;
//! a run that is cancelled half-way leaves it with the session, so the caller
//! then drops the connection (which releases it).

use tokio_postgres::Client;

/// (version, name, SQL). Append only; never edit a migration that has shipped.
/// Versions are PostgreSQL's own: schema 1 here is SQLite's schema 11.
pub const PG_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_schema",
        include_str!("../../migrations/postgres/0001_schema.sql"),
    ),
    (
        2,
        "0002_relying_parties",
        include_str!("../../migrations/postgres/0002_relying_parties.sql"),
    ),
    (
        3,
        "0003_rsa_keys",
        include_str!("../../migrations/postgres/0003_rsa_keys.sql"),
    ),
    (
        4,
        "0004_self_registered_clients",
        include_str!("../../migrations/postgres/0004_self_registered_clients.sql"),
    ),
    (
        5,
        "0005_dpop",
        include_str!("../../migrations/postgres/0005_dpop.sql"),
    ),
    (
        6,
        "0006_ciba",
        include_str!("../../migrations/postgres/0006_ciba.sql"),
    ),
    (
        7,
        "0007_refresh_task",
        include_str!("../../migrations/postgres/0007_refresh_task.sql"),
    ),
];

/// The advisory lock key all deputy instances migrate under ("deputy" in
/// ASCII, then a number for the purpose), fixed for every version.
pub const MIGRATION_LOCK: i64 = 0x6465_7075_7479_0001;

pub fn latest_version() -> i64 {
    PG_MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// A driver error with the server's words: tokio-postgres' own `Display`
/// says only "db error" and keeps the message in the source.
fn describe(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// Apply every migration the database lacks. Returns the versions applied.
/// A database newer than this binary is refused rather than touched.
pub async fn migrate(client: &mut Client) -> Result<Vec<i64>, String> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| format!("cannot take the migration lock: {}", describe(&e)))?;
    let result = migrate_locked(client).await;
    let unlocked = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| format!("cannot release the migration lock: {}", describe(&e)))
        .and_then(|row| {
            row.try_get::<_, bool>(0)
                .map_err(|e| format!("cannot release the migration lock: {}", describe(&e)))
        });
    // The migration's own failure is the one to tell.
    let applied = result?;
    match unlocked {
        Ok(true) => Ok(applied),
        Ok(false) => Err("the migration lock was not held at the end".to_string()),
        Err(e) => Err(e),
    }
}

async fn migrate_locked(client: &mut Client) -> Result<Vec<i64>, String> {
    client
        .batch_execute(
            // Without the NOTICE "already exists, skipping" at every start
            // (it would reach the log as a line of its own).
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    BIGINT PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at BIGINT NOT NULL
             );
             RESET client_min_messages",
        )
        .await
        .map_err(|e| format!("cannot create schema_migrations: {}", describe(&e)))?;
    let current: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| format!("cannot read the schema version: {}", describe(&e)))?;
    let latest = latest_version();
    if current > latest {
        return Err(format!(
            "database schema version {current} is newer than this deputy supports ({latest}); \
             use a newer deputy"
        ));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in PG_MIGRATIONS {
        if *version <= current {
            continue;
        }
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let failed =
            |e: tokio_postgres::Error| format!("migration {name} failed: {}", describe(&e));
        // Dropping the transaction on an error rolls it back.
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[version, name, &now],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        applied.push(*version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    //! These run against the PostgreSQL that `DEPUTY_TEST_POSTGRES` names
    //! (a URL, e.g. from `scripts/pg-cluster start DIR`) and are skipped
    //! without it. Each test works in a schema of its own.

    use super::*;
    use tokio_postgres::NoTls;

    /// The URL to test against, or None (the test is skipped).
    fn url() -> Option<String> {
        match std::env::var("DEPUTY_TEST_POSTGRES") {
            Ok(u) if !u.is_empty() => Some(u),
            _ => {
                eprintln!("skipped: DEPUTY_TEST_POSTGRES is not set");
                None
            }
        }
    }

    async fn connect(url: &str, schema: &str) -> Client {
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        config.options(format!("-c search_path={schema}"));
        let (client, connection) = config.connect(NoTls).await.unwrap();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("connection ended: {e}");
            }
        });
        client
    }

    /// A fresh, empty schema and a connection whose search_path is it.
    async fn fresh(url: &str, test: &str) -> (Client, String) {
        let schema = format!(
            "deputy_test_{test}_{}",
            crate::secret::random_token(6)
                .to_lowercase()
                .replace('-', "_")
        );
        let admin = connect(url, "public").await;
        admin
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .unwrap();
        (connect(url, &schema).await, schema)
    }

    async fn drop_schema(url: &str, schema: &str) {
        connect(url, "public")
            .await
            .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await
            .unwrap();
    }

    fn all_versions() -> Vec<i64> {
        PG_MIGRATIONS.iter().map(|m| m.0).collect()
    }

    async fn recorded(c: &Client) -> Vec<i64> {
        c.query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    /// Advisory locks this session still holds.
    async fn locks_held(c: &Client) -> i64 {
        c.query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    }

    async fn count(c: &Client, table: &str) -> i64 {
        c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn link(c: &Client) -> Option<String> {
        c.query_one(
            "SELECT client_id FROM resources WHERE id = 'https://api.example'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    }

    fn db_message(e: &tokio_postgres::Error) -> String {
        e.as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string())
    }

    #[tokio::test]
    async fn applies_every_migration_once() {
        let Some(url) = url() else { return };
        let (mut c, schema) = fresh(&url, "once").await;
        assert_eq!(migrate(&mut c).await.unwrap(), all_versions());
        assert_eq!(all_versions(), (1..=latest_version()).collect::<Vec<_>>());
        assert_eq!(recorded(&c).await, all_versions());
        assert_eq!(locks_held(&c).await, 0, "the lock is released");
        let tables: i64 = c
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(tables, 21, "20 tables and schema_migrations");
        drop_schema(&url, &schema).await;
    }

    #[tokio::test]
    async fn a_second_run_applies_nothing() {
        let Some(url) = url() else { return };
        let (mut c, schema) = fresh(&url, "twice").await;
        migrate(&mut c).await.unwrap();
        assert!(migrate(&mut c).await.unwrap().is_empty());
        assert_eq!(recorded(&c).await, all_versions());
        drop_schema(&url, &schema).await;
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused_and_the_lock_released() {
        let Some(url) = url() else { return };
        let (mut c, schema) = fresh(&url, "newer").await;
        migrate(&mut c).await.unwrap();
        c.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
            &[],
        )
        .await
        .unwrap();
        let err = migrate(&mut c).await.unwrap_err();
        assert_eq!(
            err,
            format!(
                "database schema version 999 is newer than this deputy supports ({}); \
                 use a newer deputy",
                latest_version()
            )
        );
        assert_eq!(locks_held(&c).await, 0, "released on error too");
        drop_schema(&url, &schema).await;
    }

    #[tokio::test]
    async fn a_failing_migration_leaves_nothing_and_releases_the_lock() {
        let Some(url) = url() else { return };
        let (mut c, schema) = fresh(&url, "fails").await;
        // A table in the way: the migration's CREATE TABLE fails half-way.
        c.batch_execute("CREATE TABLE login_failures (x INT)")
            .await
            .unwrap();
        let err = migrate(&mut c).await.unwrap_err();
        assert!(
            err.starts_with("migration 0001_schema failed: db error: ERROR: relation \"login_failures\" already exists"),
            "{err}"
        );
        assert_eq!(locks_held(&c).await, 0);
        assert!(recorded(&c).await.is_empty(), "nothing recorded");
        let clients: Option<String> = c
            .query_one("SELECT to_regclass('clients')::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(clients, None, "the migration's first tables rolled back");
        drop_schema(&url, &schema).await;
    }

    /// Two instances starting at once: both succeed, one of them applies
    /// everything, and each version is recorded once.
    #[tokio::test]
    async fn concurrent_runs_both_succeed_and_record_each_version_once() {
        let Some(url) = url() else { return };
        let (mut a, schema) = fresh(&url, "race").await;
        let mut b = connect(&url, &schema).await;
        let (ra, rb) = tokio::join!(migrate(&mut a), migrate(&mut b));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let mut both = [ra.clone(), rb.clone()];
        both.sort();
        assert_eq!(both, [Vec::new(), all_versions()], "{ra:?} {rb:?}");
        let rows: Vec<(i64, i64)> = a
            .query(
                "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(
            rows,
            all_versions()
                .into_iter()
                .map(|v| (v, 1))
                .collect::<Vec<_>>()
        );
        drop_schema(&url, &schema).await;
    }

    /// The same SQL runs on both engines only if the tables are the same:
    /// every SQLite table (after all SQLite migrations) exists here with the
    /// same columns in the same order, of the matching type and nullability,
    /// and so does every named index.
    #[tokio::test]
    async fn tables_columns_and_indexes_match_sqlite() {
        let Some(url) = url() else { return };
        let (mut c, schema) = fresh(&url, "same").await;
        migrate(&mut c).await.unwrap();
        let mut lite = rusqlite::Connection::open_in_memory().unwrap();
        super::super::migrate::migrate(&mut lite).unwrap();
        let names = |sql: &str| -> Vec<String> {
            lite.prepare(sql)
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let tables = names(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT IN ('sqlite_sequence', 'schema_migrations') ORDER BY name",
        );
        assert_eq!(tables.len(), 20);
        // SQLite's 0/1 flags are BOOLEAN here; its other integers BIGINT.
        let flags = [
            ("authorization_codes", "redirect_uri_sent"),
            ("interactions", "login_done"),
            ("users", "email_verified"),
            ("clients", "id_token_claims"),
            ("clients", "require_dpop"),
            ("delegation_rules", "require_dpop"),
        ];
        for table in &tables {
            let want: Vec<(String, String, bool)> = lite
                .prepare("SELECT name, type, \"notnull\" OR pk > 0 FROM pragma_table_info(?1) ORDER BY cid")
                .unwrap()
                .query_map([table], |r| {
                    let name: String = r.get(0)?;
                    let ty = match r.get::<_, String>(1)?.as_str() {
                        "INTEGER" if flags.contains(&(table.as_str(), name.as_str())) => "boolean",
                        "INTEGER" => "bigint",
                        "TEXT" => "text",
                        "BLOB" => "bytea",
                        other => panic!("{table}.{name}: SQLite type {other}"),
                    };
                    Ok((name, ty.to_string(), r.get(2)?))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let got: Vec<(String, String, bool)> = c
                .query(
                    "SELECT column_name::text, data_type::text, is_nullable = 'NO' \
                     FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 \
                     ORDER BY ordinal_position",
                    &[&schema, table],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            assert_eq!(got, want, "{table}");
        }
        let lite_indexes = names(
            "SELECT name FROM sqlite_master WHERE type = 'index' \
             AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
        );
        let mut pg_indexes: Vec<String> = c
            .query(
                "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 \
                 AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key' ORDER BY 1",
                &[&schema],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        pg_indexes.sort();
        assert_eq!(pg_indexes, lite_indexes);
        drop_schema(&url, &schema).await;
    }

    #[tokio::test]
    async fn the_audit_trail_is_append_only() {
        let Some(url) = url() else { return };
        let (mut c, schema) = fresh(&url, "audit").await;
        migrate(&mut c).await.unwrap();
        c.execute(
            "INSERT INTO audit_events (at, event, mode, outcome) VALUES (1, 'x', 'system', 'ok')",
            &[],
        )
        .await
        .unwrap();
        for sql in [
            "UPDATE audit_events SET event = 'y'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
            "DELETE FROM audit_events WHERE false",
            "INSERT INTO audit_events (at, event, mode, outcome) VALUES (2, 'z', 'system', 'ok') \
             ON CONFLICT (id) DO UPDATE SET event = 'forged'",
        ] {
            let e = c.batch_execute(sql).await.unwrap_err();
            assert_eq!(db_message(&e), "the audit trail is append-only", "{sql}");
        }
        // An insert may not choose its id (no event forged over another).
        let id: i64 = c
            .query_one("SELECT id FROM audit_events", &[])
            .await
            .unwrap()
            .get(0);
        let forged = c
            .execute(
                "INSERT INTO audit_events (id, at, event, mode, outcome) \
                 VALUES ($1, 2, 'forged', 'system', 'ok')",
                &[&id],
            )
            .await
            .unwrap_err();
        assert!(
            db_message(&forged).contains("cannot insert a non-DEFAULT value into column \"id\""),
            "{forged}"
        );
        let events: Vec<String> = c
            .query("SELECT event FROM audit_events ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(events, vec!["x".to_string()]);
        // New events still go in, after the first.
        let next: i64 = c
            .query_one(
                "INSERT INTO audit_events (at, event, mode, outcome) \
                 VALUES (3, 'z', 'system', 'ok') RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(next > id);
        drop_schema(&url, &schema).await;
    }

    #[tokio::test]
    async fn removing_a_client_clears_it_from_its_resources() {
        let Some(url) = url() else { return };
        let (mut c, schema) = fresh(&url, "fk").await;
        migrate(&mut c).await.unwrap();
        c.batch_execute(
            "INSERT INTO clients (id, kind, name, auth_method, created_at) VALUES ('api', 'service', 'api', 'none', 0);
             INSERT INTO resources VALUES ('https://api.example', 'api', 0);
             INSERT INTO resource_scopes VALUES ('https://api.example', 'read', 'Read');",
        )
        .await
        .unwrap();
        assert_eq!(link(&c).await.as_deref(), Some("api"));
        let e = c
            .batch_execute("UPDATE resources SET client_id = 'nobody'")
            .await
            .unwrap_err();
        assert_eq!(
            e.as_db_error().map(|d| d.code().clone()),
            Some(tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION),
            "a link to a client that does not exist is refused"
        );
        c.batch_execute("DELETE FROM clients WHERE id = 'api'")
            .await
            .unwrap();
        assert_eq!(link(&c).await, None, "cleared with the client");
        assert_eq!(
            count(&c, "resource_scopes").await,
            1,
            "the resource and its scopes stay"
        );
        c.batch_execute("DELETE FROM resources").await.unwrap();
        assert_eq!(
            count(&c, "resource_scopes").await,
            0,
            "scopes go with their resource"
        );
        drop_schema(&url, &schema).await;
    }
}
