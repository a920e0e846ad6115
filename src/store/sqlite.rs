//! The SQLite engine: WAL, one writer thread with group commit, a few reader
//! threads.
//!
//! All writes of the server go through one writer thread that groups the jobs
//! waiting at the same moment into one transaction (group commit), each job in
//! its own savepoint so one job's failure never touches another's. A job's
//! result is delivered only after the transaction committed, so nothing a
//! client is told can be lost by a crash. Reads run on a few reader threads
//! with their own connections. No SQLite call ever runs on an async executor
//! thread. The management CLI uses the same repository functions on its own
//! connection; SQLite's locking and the busy timeout make that safe while the
//! server runs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::db::{Db, Dialect, Row, Value};
use super::{Outcome, StoreError, StoreResult};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn value_of(v: ValueRef<'_>) -> StoreResult<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
                .to_string(),
        ),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
        ValueRef::Real(_) => return Err(StoreError::Corrupt("unexpected REAL column".into())),
    })
}

/// A SQLite connection (or savepoint) as a `Db`.
pub struct SqliteDb<'a>(pub &'a Connection);

impl Db for SqliteDb<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, args: &[Value]) -> StoreResult<usize> {
        Ok(self
            .0
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(args.iter()))?)
    }

    fn query(&self, sql: &str, args: &[Value]) -> StoreResult<Vec<Row>> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(value_of(r.get_ref(i)?)?);
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn batch(&self, sql: &str) -> StoreResult<()> {
        Ok(self.0.execute_batch(sql)?)
    }
}

/// Open a connection with deputy's pragmas.
pub fn open_connection(path: &Path, read_only: bool) -> StoreResult<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if !read_only {
        // WAL: readers never block the writer. NORMAL: a commit survives a crash of
        // the process (SIGKILL); only a power loss may drop the last commits.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Checkpoints stay with the committing connection (SQLite's default of
        // 1000 pages): a separate checkpoint thread let the WAL grow to
        // gigabytes under load and slowed restarts. Shrink it back afterwards.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Savepoint journals in memory, not in a temp file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// Open (creating if needed) the database file and bring its schema up to date.
pub fn open_and_migrate(path: &Path) -> StoreResult<Connection> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Schema(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
    }
    let mut conn = open_connection(path, false)?;
    super::migrate::migrate(&mut conn)?;
    Ok(conn)
}

fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// A write job: run against the transaction (or told why it could not run),
/// it says whether its savepoint is kept and how to deliver its result.
type WriteJob = Box<dyn FnOnce(Result<&Connection, &StoreError>) -> (bool, Completion) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The server's handle on a SQLite database. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Sender<WriteJob>,
    readers: Sender<ReadJob>,
    path: PathBuf,
    /// (device, inode) of the file opened at start; see `file_is_current`.
    identity: (u64, u64),
}

/// The most jobs one group commit takes.
const MAX_BATCH: usize = 512;

impl SqliteStore {
    /// Open the database, migrate it, and start the writer and reader threads.
    pub fn open(path: &Path, reader_threads: usize) -> StoreResult<SqliteStore> {
        let writer_conn = open_and_migrate(path)?;
        let identity = file_identity(path)
            .map_err(|e| StoreError::Schema(format!("cannot stat {}: {e}", path.display())))?;
        let (wtx, wrx) = bounded::<WriteJob>(8192);
        thread::Builder::new()
            .name("deputy-writer".into())
            .spawn(move || writer_loop(writer_conn, wrx))
            .map_err(|e| StoreError::Schema(format!("cannot start writer thread: {e}")))?;
        let (rtx, rrx) = bounded::<ReadJob>(8192);
        for i in 0..reader_threads.max(1) {
            let conn = open_connection(path, true)?;
            let rx = rrx.clone();
            thread::Builder::new()
                .name(format!("deputy-reader-{i}"))
                .spawn(move || reader_loop(conn, rx))
                .map_err(|e| StoreError::Schema(format!("cannot start reader thread: {e}")))?;
        }
        Ok(SqliteStore {
            writer: wtx,
            readers: rtx,
            path: path.to_path_buf(),
            identity,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database path still names the file opened at start. If it was
    /// deleted, renamed or replaced, the open connections keep working on the
    /// old inode and every later write is lost with it.
    pub fn file_is_current(&self) -> bool {
        file_identity(&self.path).is_ok_and(|id| id == self.identity)
    }

    /// Run `f` once in the next group-commit transaction, in its own savepoint.
    pub async fn transact<T, E, F>(&self, mut f: F) -> StoreResult<Result<T, E>>
    where
        F: FnMut(&dyn Db) -> StoreResult<Outcome<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |conn: Result<&Connection, &StoreError>| {
            let conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    // Never run outside the real transaction: fail with its cause.
                    let err = clone_err(e);
                    let completion: Completion = Box::new(move |_| {
                        let _ = tx.send(Err(err));
                    });
                    return (false, completion);
                }
            };
            let result = catch_unwind(AssertUnwindSafe(|| f(&SqliteDb(conn))))
                .unwrap_or(Err(StoreError::Panicked));
            let (keep, result) = match result {
                Ok(Outcome::Commit(t)) => (true, Ok(Ok(t))),
                Ok(Outcome::Refuse(e)) => (true, Ok(Err(e))),
                Ok(Outcome::Rollback(e)) => (false, Ok(Err(e))),
                Err(e) => (false, Err(e)),
            };
            let completion: Completion = Box::new(move |commit: StoreResult<()>| {
                let out = match commit {
                    Ok(()) => result,
                    Err(e) => Err(e),
                };
                let _ = tx.send(out);
            });
            (keep, completion)
        });
        self.writer
            .send(job)
            .map_err(|_thread_gone| StoreError::Closed)?;
        rx.await.map_err(|_thread_gone| StoreError::Closed)?
    }

    /// Run a read-only query on a reader thread.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&dyn Db) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: ReadJob = Box::new(move |conn: &Connection| {
            let out = catch_unwind(AssertUnwindSafe(|| f(&SqliteDb(conn))))
                .unwrap_or(Err(StoreError::Panicked));
            let _ = tx.send(out);
        });
        self.readers
            .send(job)
            .map_err(|_thread_gone| StoreError::Closed)?;
        rx.await.map_err(|_thread_gone| StoreError::Closed)?
    }
}

fn writer_loop(mut conn: Connection, rx: Receiver<WriteJob>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_empty) => break,
            }
        }
        run_batch(&mut conn, batch);
    }
}

fn run_batch(conn: &mut Connection, batch: Vec<WriteJob>) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let err = StoreError::from(e);
            tracing::error!(error = %err, "cannot begin write transaction");
            for job in batch {
                // The job still has to be told; run nothing, fail it.
                let (_, completion) = job(Err(&err));
                completion(Err(clone_err(&err)));
            }
            return;
        }
    };
    let mut completions = Vec::with_capacity(batch.len());
    for job in batch {
        match tx.savepoint() {
            Ok(mut sp) => {
                let (keep, completion) = job(Ok(&sp));
                let done = if keep {
                    sp.commit()
                } else {
                    sp.rollback().and_then(|_| sp.finish())
                };
                match done {
                    Ok(()) => completions.push((completion, None)),
                    Err(e) => completions.push((completion, Some(StoreError::from(e)))),
                }
            }
            Err(e) => {
                let err = StoreError::from(e);
                tracing::error!(error = %err, "cannot open a savepoint for a write job");
                let (_, completion) = job(Err(&err));
                completion(Err(clone_err(&err)));
            }
        }
    }
    let _commit = crate::metrics::Timed::new(crate::metrics::store_write);
    let commit = tx.commit().map_err(StoreError::from);
    if let Err(e) = &commit {
        tracing::error!(error = %e, "write transaction failed to commit");
    }
    for (completion, own_err) in completions {
        let outcome = match (&commit, own_err) {
            (_, Some(e)) => Err(e),
            (Ok(()), None) => Ok(()),
            (Err(e), None) => Err(clone_err(e)),
        };
        completion(outcome);
    }
}

/// A batch-wide failure, told to each job of the batch.
fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Busy => StoreError::Busy,
        StoreError::Closed => StoreError::Closed,
        other => StoreError::Schema(format!("transaction failed: {other}")),
    }
}

fn reader_loop(conn: Connection, rx: Receiver<ReadJob>) {
    while let Ok(job) = rx.recv() {
        job(&conn);
    }
}

/// The management CLI's own connection: each change in one IMMEDIATE
/// transaction (SQLite's locking and busy timeout make that safe while the
/// server runs).
pub struct SqliteDirect(pub Connection);

impl SqliteDirect {
    /// One change in one IMMEDIATE transaction: `Ok(Ok(_))` commits, a
    /// refusal (`Ok(Err(_))`) or a store failure writes nothing.
    pub fn transact<T, E>(
        &mut self,
        mut f: impl FnMut(&dyn Db) -> StoreResult<Result<T, E>>,
    ) -> StoreResult<Result<T, E>> {
        let tx = self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&SqliteDb(&tx))?;
        if out.is_ok() {
            tx.commit()?;
        }
        Ok(out)
    }

    pub fn read<T>(&mut self, f: impl FnOnce(&dyn Db) -> StoreResult<T>) -> StoreResult<T> {
        f(&SqliteDb(&self.0))
    }
}
