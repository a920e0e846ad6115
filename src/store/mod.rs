//! Persistence behind one repository API, on SQLite (embedded, the
//! default) or PostgreSQL (several instances on one database). Repository
//! functions in the modules below speak `db::Db`; the engines are
//! `sqlite.rs` and `postgres.rs`. No SQL lives outside `src/store/` and
//! `migrations/`.

pub mod account;
pub mod audit;
pub mod backchannel;
pub mod clients;
pub mod codes;
pub mod consents;
pub mod copy;
pub mod db;
pub mod delegation;
pub mod dpop;
pub mod lineage;
pub mod liveness;
pub mod login_failures;
pub mod migrate;
pub mod pg_migrate;
pub mod postgres;
pub mod refresh;
pub mod registration_tokens;
pub mod resources;
pub mod sessions;
pub mod signing_keys;
pub mod sqlite;
pub mod tokens;
pub mod users;

use std::path::Path;

pub use db::{Db, Dialect, Row, Value};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database is busy")]
    Busy,
    /// A serializable transaction lost a race; the engine runs its job again.
    #[error("transaction must be retried")]
    Retry,
    /// The database cannot be reached (a 503, the client may retry).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("store is shut down")]
    Closed,
    #[error("store job panicked")]
    Panicked,
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Schema(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How a write job ends. A refusal that must leave a trace (an audit event,
/// a spent client assertion, a replayed code's revoked family) commits and
/// still answers an error; anything else that fails rolls back.
#[derive(Debug)]
pub enum Outcome<T, E> {
    /// Keep what the job wrote and answer `T`.
    Commit(T),
    /// Keep what the job wrote and answer the refusal `E`.
    Refuse(E),
    /// Undo what the job wrote and answer the refusal `E`.
    Rollback(E),
}

/// The server's handle on the database, whatever the engine. Cheap to clone.
/// Write jobs may run more than once (an engine may retry a transaction
/// that lost a serialization race), so they are `FnMut` and must not keep
/// effects outside the database.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Open the database (a SQLite file, or a PostgreSQL URL), migrate it,
    /// and start what serves it.
    pub fn open(database: &Path, reader_threads: usize) -> StoreResult<Store> {
        match database.to_str().filter(|d| postgres::is_postgres_url(d)) {
            Some(url) => Ok(Store::Postgres(postgres::PgStore::open(url)?)),
            None => Ok(Store::Sqlite(sqlite::SqliteStore::open(
                database,
                reader_threads,
            )?)),
        }
    }

    /// The database still is the one opened at start (a SQLite file that was
    /// deleted, renamed or replaced is not; PostgreSQL answers `ping`).
    pub fn file_is_current(&self) -> bool {
        match self {
            Store::Sqlite(s) => s.file_is_current(),
            Store::Postgres(_) => true,
        }
    }

    /// Run `f` in a transaction: `Ok` keeps what it wrote, `Err` rolls it
    /// back. The result arrives after the commit.
    pub async fn write<T, F>(&self, mut f: F) -> StoreResult<T>
    where
        F: FnMut(&dyn Db) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.transact(move |c| f(c).map(Outcome::<T, StoreError>::Commit))
            .await
            .and_then(|r| r)
    }

    /// Like `write`, for domain operations that may end in a refusal: the
    /// job's `Outcome` says whether its writes are kept (see `Outcome`).
    /// A store failure (`Err`) always rolls back.
    pub async fn transact<T, E, F>(&self, mut f: F) -> StoreResult<Result<T, E>>
    where
        F: FnMut(&dyn Db) -> StoreResult<Outcome<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        // Time from here to the job's start: the wait for the writer
        // (SQLite) or for a pooled connection (PostgreSQL).
        let mut timer = Some(crate::metrics::Timer::start());
        let f = move |c: &dyn Db| {
            // Once: a job run again after a lost serialization race did not
            // wait in the queue a second time.
            if let Some(waited) = timer.take().and_then(|t| t.elapsed()) {
                crate::metrics::store_queue_wait(waited);
            }
            f(c)
        };
        match self {
            Store::Sqlite(s) => s.transact(f).await,
            Store::Postgres(s) => s.transact(f).await,
        }
    }

    /// Run a read-only query.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&dyn Db) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        match self {
            Store::Sqlite(s) => s.read(f).await,
            Store::Postgres(s) => s.read(f).await,
        }
    }
}

/// The management CLI's own connection to the database, whatever the engine.
pub enum Direct {
    Sqlite(sqlite::SqliteDirect),
    Postgres(postgres::PgStore),
}

impl Direct {
    /// Open (creating and migrating if needed) the database.
    pub fn open(database: &Path) -> StoreResult<Direct> {
        match database.to_str().filter(|d| postgres::is_postgres_url(d)) {
            Some(url) => Ok(Direct::Postgres(postgres::PgStore::open(url)?)),
            None => Ok(Direct::Sqlite(sqlite::SqliteDirect(
                sqlite::open_and_migrate(database)?,
            ))),
        }
    }

    /// One change in one transaction: a refusal (`Ok(Err(_))`) or a store
    /// failure writes nothing.
    pub fn transact<T: Send, E: Send>(
        &mut self,
        f: impl FnMut(&dyn Db) -> StoreResult<Result<T, E>> + Send,
    ) -> StoreResult<Result<T, E>> {
        match self {
            Direct::Sqlite(d) => d.transact(f),
            Direct::Postgres(d) => d.transact_blocking(f),
        }
    }

    pub fn read<T: Send>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> StoreResult<T> + Send,
    ) -> StoreResult<T> {
        match self {
            Direct::Sqlite(d) => d.read(f),
            Direct::Postgres(d) => d.read_blocking(f),
        }
    }
}

/// The database answers a trivial query (readiness).
pub fn ping(conn: &dyn Db) -> StoreResult<bool> {
    Ok(conn.scalar::<i64>("SELECT 1", &[])? == 1)
}

/// JSON array of strings stored in a TEXT column.
pub fn to_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_cannot_fail| "[]".to_string())
}

pub fn from_json_list(text: &str) -> StoreResult<Vec<String>> {
    Ok(serde_json::from_str(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "deputy-store-{}-{}-{}",
            name,
            std::process::id(),
            crate::secret::random_token(6)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("t.db")
    }

    #[tokio::test]
    async fn failed_job_rolls_back_only_itself() {
        let store = Store::open(&temp_db("rb"), 1).unwrap();
        store
            .write(|c| {
                c.batch("CREATE TABLE t (x INTEGER UNIQUE)")?;
                Ok(())
            })
            .await
            .unwrap();
        let a = store.write(|c| {
            c.execute("INSERT INTO t (x) VALUES (1)", &[])?;
            Ok(())
        });
        let b = store.write(|c| {
            c.execute("INSERT INTO t (x) VALUES (2)", &[])?;
            c.execute("INSERT INTO t (x) VALUES (1)", &[])?; // fails: duplicate
            Ok(())
        });
        let (ra, rb) = tokio::join!(a, b);
        assert!(ra.is_ok());
        assert!(rb.is_err());
        let rows: i64 = store
            .read(|c| c.scalar("SELECT count(*) FROM t", &[]))
            .await
            .unwrap();
        assert_eq!(rows, 1, "the failed job's first insert must be rolled back");
    }
}
