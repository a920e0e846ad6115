//! The PostgreSQL engine, for several deputy instances on one database.
//!
//! Repository functions are synchronous (`Db`), as on SQLite; here they run
//! on blocking threads, each on a pooled connection it drives itself
//! (`conn.rs`, `pool.rs`). A connection the server closed is dropped and a
//! new one opened on demand, so the pool comes back by itself when
//! PostgreSQL does.
//!
//! Every write job runs in a SERIALIZABLE transaction: PostgreSQL guarantees
//! the outcome of some serial order of all of them, across instances, which
//! is what SQLite's single writer gave, so every check-then-write rule
//! (single use, liveness re-checks against cascades) holds unchanged. A
//! transaction that loses a serialization race is rolled back and its job
//! run again (jobs are `FnMut` and keep no effects outside the database),
//! a bounded number of times; then the answer is 503.

mod conn;
mod db;
mod pool;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};

use self::conn::PgConn;
use self::db::PgDb;
use self::pool::Pool;
use super::db::{Db, Value};
use super::{Outcome, StoreError, StoreResult};

/// Connections per instance.
const POOL_SIZE: usize = 16;
/// How often a job that lost a serialization race is run again.
const MAX_ATTEMPTS: usize = 20;
/// Waiting for a pooled connection to come back when all are out.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// Waiting for a lock another transaction holds, milliseconds.
const LOCK_WAIT_MS: u32 = 5000;

/// The runtime whose blocking threads run store jobs: one per process,
/// shared by every store (tests open many). Connections do not live on it.
fn runtime() -> StoreResult<&'static Runtime> {
    static RT: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(64)
            .thread_name("deputy-pg")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| StoreError::Schema(format!("cannot start the PostgreSQL runtime: {e}")))
}

/// True for a `database` setting that names PostgreSQL.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// A driver error with the server's words (tokio-postgres' own `Display`
/// says only "db error" and keeps the message in the source).
fn describe(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// Run `f` where blocking is allowed: on this thread, unless it drives an
/// async runtime (a test, a handler), then on a thread of its own.
fn off_async<R: Send>(f: impl FnOnce() -> R + Send) -> StoreResult<R> {
    if Handle::try_current().is_err() {
        return Ok(f());
    }
    std::thread::scope(|s| s.spawn(f).join()).map_err(|_panicked| StoreError::Panicked)
}

fn classify(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            StoreError::Retry
        }
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::QUERY_CANCELED => {
            StoreError::Busy
        }
        Some(c)
            if c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW =>
        {
            StoreError::Unavailable(describe(&e))
        }
        Some(_) => StoreError::Database(describe(&e)),
        // No SQLSTATE: the connection itself failed (closed, refused, I/O).
        None => StoreError::Unavailable(describe(&e)),
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_string().as_str().to_sql(ty, out),
            },
            Value::Bool(b) => match *ty {
                Type::BOOL => b.to_sql(ty, out),
                Type::INT8 => i64::from(*b).to_sql(ty, out),
                Type::INT4 => i32::from(*b).to_sql(ty, out),
                _ => Err(format!("a boolean cannot be bound as {ty}").into()),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Bytes(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The server's handle on a PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// The URL without its password, for messages.
    shown: Arc<str>,
}

/// Build the pool for `url`: TLS through OpenSSL (certificate and host name
/// verified) when the URL says `sslmode=require`, plain otherwise.
fn pool_for(url: &str) -> StoreResult<Pool> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        StoreError::Schema(format!("not a usable PostgreSQL URL: {e}"))
    })?;
    // A lock held elsewhere is waited for as long as SQLite's busy timeout,
    // then the request is answered 503 instead of hanging.
    let options = match config.get_options() {
        Some(o) => format!("{o} -c lock_timeout={}", LOCK_WAIT_MS),
        None => format!("-c lock_timeout={}", LOCK_WAIT_MS),
    };
    config.options(&options);
    let connect: Box<dyn Fn() -> StoreResult<PgConn> + Send + Sync> =
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            let builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
                .map_err(|e| StoreError::Schema(format!("cannot set up TLS: {e}")))?;
            let tls = postgres_openssl::MakeTlsConnector::new(builder.build());
            Box::new(move || PgConn::connect(&config, tls.clone()))
        } else {
            Box::new(move || PgConn::connect(&config, tokio_postgres::NoTls))
        };
    Ok(Pool::new(POOL_SIZE, POOL_WAIT, connect))
}

/// The URL with any password replaced, for messages and logs.
pub fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_not_a_url) => "(unparseable URL)".to_string(),
    }
}

impl PgStore {
    /// Connect, and bring the schema up to date (safe when several instances
    /// start at once: the migration runner holds an advisory lock).
    pub fn open(url: &str) -> StoreResult<PgStore> {
        Ok(Self::open_migrated(url)?.0)
    }

    /// `open`, and the migrations it applied and the schema version now.
    pub fn open_migrated(url: &str) -> StoreResult<(PgStore, Vec<i64>, i64)> {
        let store = PgStore {
            pool: pool_for(url)?,
            shown: shown_url(url).into(),
        };
        let applied = off_async(|| {
            let mut conn = store.pool.get()?;
            let applied = conn.run(super::pg_migrate::migrate);
            // A migration cut short may leave the advisory lock with the
            // session: this connection is not reused.
            conn.in_transaction = true;
            applied?.map_err(StoreError::Schema)
        })??;
        Ok((store, applied, super::pg_migrate::latest_version()))
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Run `f` in a SERIALIZABLE transaction, again if it loses a
    /// serialization race.
    pub async fn transact<T, E, F>(&self, mut f: F) -> StoreResult<Result<T, E>>
    where
        F: FnMut(&dyn Db) -> StoreResult<Outcome<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let pool = self.pool.clone();
        runtime()?
            .spawn_blocking(move || run_transaction(&pool, &mut f))
            .await
            .map_err(|_join| StoreError::Panicked)?
    }

    /// Run a read on a pooled connection (READ COMMITTED: every committed
    /// change, from any instance, is seen).
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&dyn Db) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        runtime()?
            .spawn_blocking(move || run_read(&pool, f))
            .await
            .map_err(|_join| StoreError::Panicked)?
    }

    /// The same transactions, for the management CLI (a blocking caller).
    pub fn transact_blocking<T: Send, E: Send>(
        &self,
        mut f: impl FnMut(&dyn Db) -> StoreResult<Result<T, E>> + Send,
    ) -> StoreResult<Result<T, E>> {
        off_async(|| {
            run_transaction(&self.pool, &mut |db| {
                Ok(match f(db)? {
                    Ok(t) => Outcome::Commit(t),
                    Err(e) => Outcome::Rollback(e),
                })
            })
        })?
    }

    /// A read for the management CLI and the key reloads.
    pub fn read_blocking<T: Send>(
        &self,
        f: impl FnOnce(&dyn Db) -> StoreResult<T> + Send,
    ) -> StoreResult<T> {
        off_async(|| run_read(&self.pool, f))?
    }
}

fn run_read<T>(pool: &Pool, f: impl FnOnce(&dyn Db) -> StoreResult<T>) -> StoreResult<T> {
    let mut conn = pool.get()?;
    let db = PgDb::reader(&mut conn);
    catch_unwind(AssertUnwindSafe(|| f(&db))).unwrap_or(Err(StoreError::Panicked))
}

fn run_transaction<T, E, F>(pool: &Pool, f: &mut F) -> StoreResult<Result<T, E>>
where
    F: FnMut(&dyn Db) -> StoreResult<Outcome<T, E>>,
{
    let mut conn = pool.get()?;
    for attempt in 1..=MAX_ATTEMPTS {
        match attempt_once(&mut conn, f) {
            Err(StoreError::Retry) => {
                // Let the winner finish before trying again; a random share
                // of a growing pause, so two losers do not meet again.
                let cap_ms = 1u64 << attempt.min(6);
                let pause = u64::from(crate::secret::random_bytes::<1>()[0]) * cap_ms / 255;
                std::thread::sleep(Duration::from_millis(pause.max(1)));
                if !conn.is_open() {
                    conn = pool.get()?;
                }
                continue;
            }
            other => return other,
        }
    }
    tracing::warn!("a transaction lost {MAX_ATTEMPTS} serialization races in a row");
    Err(StoreError::Busy)
}

fn attempt_once<T, E, F>(conn: &mut PgConn, f: &mut F) -> StoreResult<Result<T, E>>
where
    F: FnMut(&dyn Db) -> StoreResult<Outcome<T, E>>,
{
    let tx = PgDb::transaction(conn);
    let result = catch_unwind(AssertUnwindSafe(|| f(&tx))).unwrap_or(Err(StoreError::Panicked));
    match result {
        Ok(Outcome::Commit(t)) => {
            let _commit = crate::metrics::Timed::new(crate::metrics::store_write);
            tx.commit()?;
            Ok(Ok(t))
        }
        Ok(Outcome::Refuse(e)) => {
            let _commit = crate::metrics::Timed::new(crate::metrics::store_write);
            tx.commit()?;
            Ok(Err(e))
        }
        Ok(Outcome::Rollback(e)) => {
            tx.rollback()?;
            Ok(Err(e))
        }
        Err(e) => {
            // The job's own error is the one to tell; a connection that
            // cannot roll back is not reused (it stays `in_transaction`).
            let _ = tx.rollback();
            Err(e)
        }
    }
}

/// A fresh schema in the database `url` names, and the URL that makes it
/// the search path of every connection (tests and benchmarks give each
/// deputy its own schema in one database).
pub fn create_schema(url: &str, schema: &str) -> StoreResult<String> {
    if !schema
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || schema.is_empty()
    {
        return Err(StoreError::Schema(format!(
            "`{schema}` is not a plain schema name"
        )));
    }
    let store = PgStore {
        pool: {
            let rt = runtime()?;
            let _entered = rt.enter();
            pool_for(url)?
        },
        shown: shown_url(url).into(),
    };
    store.read_blocking(|db| db.batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")))?;
    let options = format!("-c search_path={schema}");
    let encoded =
        percent_encoding::utf8_percent_encode(&options, percent_encoding::NON_ALPHANUMERIC);
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}options={encoded}"))
}

#[cfg(test)]
mod tests;
