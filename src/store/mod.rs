//! Persistence. SQLite in WAL mode behind a small repository API.
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

pub mod audit;
pub mod clients;
pub mod codes;
pub mod consents;
pub mod delegation;
pub mod lineage;
pub mod liveness;
pub mod migrate;
pub mod refresh;
pub mod resources;
pub mod sessions;
pub mod tokens;
pub mod users;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database is busy")]
    Busy,
    #[error("store is shut down")]
    Closed,
    #[error("store job panicked")]
    Panicked,
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Schema(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// True for a UNIQUE or PRIMARY KEY violation: "this single-use thing was already used".
pub fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ConstraintViolation)
    ) && e.to_string().contains("UNIQUE")
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
    migrate::migrate(&mut conn)?;
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

/// The server's handle on the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: Sender<WriteJob>,
    readers: Sender<ReadJob>,
    path: PathBuf,
    /// (device, inode) of the file opened at start; see `file_is_current`.
    identity: (u64, u64),
}

/// The most jobs one group commit takes.
const MAX_BATCH: usize = 512;

impl Store {
    /// Open the database, migrate it, and start the writer and reader threads.
    pub fn open(path: &Path, reader_threads: usize) -> StoreResult<Store> {
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
        Ok(Store {
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

    /// Run `f` inside the next group-commit transaction, in its own savepoint:
    /// `Ok` keeps what it wrote, `Err` rolls it back. The result arrives after
    /// the commit; a failed commit fails every job in it.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.transact(move |c| f(c).map(Outcome::<T, StoreError>::Commit))
            .await
            .and_then(|r| r)
    }

    /// Like `write`, for domain operations that may end in a refusal: the
    /// job's `Outcome` says whether its writes are kept (see `Outcome`).
    /// A store failure (`Err`) always rolls back.
    pub async fn transact<T, E, F>(&self, f: F) -> StoreResult<Result<T, E>>
    where
        F: FnOnce(&Connection) -> StoreResult<Outcome<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let f = crate::metrics::queued(f);
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
            let result =
                catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or(Err(StoreError::Panicked));
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
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: ReadJob = Box::new(move |conn: &Connection| {
            let out =
                catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or(Err(StoreError::Panicked));
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
                Err(_) => break,
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

/// The database answers a trivial query (readiness).
pub fn ping(conn: &Connection) -> StoreResult<bool> {
    Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))? == 1)
}

/// Run `job` in a savepoint of its own inside the caller's, so that its
/// `Rollback` undoes its writes but keeps what the caller wrote before it
/// (e.g. a spent client assertion): the rollback becomes a `Refuse`.
pub fn nested<T, E>(
    c: &Connection,
    job: impl FnOnce(&Connection) -> StoreResult<Outcome<T, E>>,
) -> StoreResult<Outcome<T, E>> {
    let run = |sql: &str| -> StoreResult<()> {
        c.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    run("SAVEPOINT nested_job")?;
    match job(c) {
        Ok(Outcome::Rollback(e)) => {
            run("ROLLBACK TO nested_job")?;
            run("RELEASE nested_job")?;
            Ok(Outcome::Refuse(e))
        }
        Ok(kept) => {
            run("RELEASE nested_job")?;
            Ok(kept)
        }
        // The caller's savepoint rolls back everything.
        Err(e) => Err(e),
    }
}

/// JSON array of strings stored in a TEXT column.
pub fn to_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_string())
}

pub fn from_json_list(text: &str) -> StoreResult<Vec<String>> {
    Ok(serde_json::from_str(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
                c.execute_batch("CREATE TABLE t (x INTEGER UNIQUE)")?;
                Ok(())
            })
            .await
            .unwrap();
        let a = store.write(|c| {
            c.execute("INSERT INTO t (x) VALUES (1)", [])?;
            Ok(())
        });
        let b = store.write(|c| {
            c.execute("INSERT INTO t (x) VALUES (2)", [])?;
            c.execute("INSERT INTO t (x) VALUES (1)", [])?; // fails: duplicate
            Ok(())
        });
        let (ra, rb) = tokio::join!(a, b);
        assert!(ra.is_ok());
        assert!(rb.is_err());
        let rows: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 1, "the failed job's first insert must be rolled back");
    }
}
