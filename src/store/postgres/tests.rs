//! The engine against the PostgreSQL that `DEPUTY_TEST_POSTGRES` names
//! (skipped without it): pipelined transactions and the pool.

use std::time::{Duration, Instant};

use super::*;
use crate::args;

fn url() -> Option<String> {
    match std::env::var("DEPUTY_TEST_POSTGRES") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("skipped: DEPUTY_TEST_POSTGRES is not set");
            None
        }
    }
}

/// A store on a fresh schema with one table `t`.
fn store() -> Option<PgStore> {
    let base = url()?;
    let schema = format!("engine_{}", crate::secret::random_token(8).to_lowercase());
    let schema: String = schema
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let store = PgStore::open(&create_schema(&base, &schema).unwrap()).unwrap();
    store
        .read_blocking(|db| db.batch("CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT NOT NULL)"))
        .unwrap();
    Some(store)
}

fn count(store: &PgStore) -> i64 {
    store
        .read_blocking(|db| db.scalar::<i64>("SELECT count(*) FROM t", &[]))
        .unwrap()
}

#[test]
fn deferred_statements_are_read_back_and_commit_together() {
    let Some(store) = store() else { return };
    let got = store
        .transact_blocking(|db| {
            db.defer("INSERT INTO t (k, n) VALUES (?1, ?2)", args!["a", 1_i64])?;
            db.defer("INSERT INTO t (k, n) VALUES (?1, ?2)", args!["b", 2_i64])?;
            // Read-your-writes: the deferred inserts leave first.
            let sum: i64 = db.scalar("SELECT CAST(sum(n) AS BIGINT) FROM t", &[])?;
            db.defer("INSERT INTO t (k, n) VALUES (?1, ?2)", args!["c", sum])?;
            Ok(Ok::<i64, ()>(sum))
        })
        .unwrap();
    assert_eq!(got, Ok(3));
    assert_eq!(count(&store), 3);
}

#[test]
fn a_failing_deferred_statement_fails_the_commit_and_keeps_nothing() {
    let Some(store) = store() else { return };
    let err = store
        .transact_blocking(|db| {
            db.defer("INSERT INTO t (k, n) VALUES (?1, ?2)", args!["x", 1_i64])?;
            // A duplicate key, only found when the commit sends it.
            db.defer("INSERT INTO t (k, n) VALUES (?1, ?2)", args!["x", 2_i64])?;
            Ok(Ok::<(), ()>(()))
        })
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Database(ref m) if m.contains("duplicate key")),
        "{err}"
    );
    assert_eq!(count(&store), 0);
    // The connection is usable afterwards (back in the pool, no open transaction).
    store
        .transact_blocking(|db| {
            db.defer("INSERT INTO t (k, n) VALUES (?1, ?2)", args!["y", 1_i64])?;
            Ok(Ok::<(), ()>(()))
        })
        .unwrap()
        .unwrap();
    assert_eq!(count(&store), 1);
}

#[test]
fn a_rollback_sends_nothing_deferred() {
    let Some(store) = store() else { return };
    let out = store
        .transact_blocking(|db| {
            db.defer("INSERT INTO t (k, n) VALUES (?1, ?2)", args!["r", 1_i64])?;
            Ok(Err::<(), &str>("refused"))
        })
        .unwrap();
    assert_eq!(out, Err("refused"));
    // Rolled back after a statement was sent, too.
    let out = store
        .transact_blocking(|db| {
            db.defer("INSERT INTO t (k, n) VALUES (?1, ?2)", args!["s", 1_i64])?;
            let n: i64 = db.scalar("SELECT count(*) FROM t", &[])?;
            Ok(Err::<(), i64>(n))
        })
        .unwrap();
    assert_eq!(out, Err(1), "the insert was visible inside");
    assert_eq!(count(&store), 0);
}

#[test]
fn the_pool_hands_out_at_most_its_size_and_then_waits() {
    let Some(base) = url() else { return };
    let config: tokio_postgres::Config = base.parse().unwrap();
    let pool = Pool::new(
        2,
        Duration::from_millis(300),
        Box::new(move || PgConn::connect(&config, tokio_postgres::NoTls)),
    );
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    assert_eq!(pool.counts(), (0, 2, 0));
    let t = Instant::now();
    assert!(matches!(pool.get(), Err(StoreError::Busy)));
    assert!(t.elapsed() >= Duration::from_millis(300));
    drop(a);
    assert_eq!(pool.counts(), (1, 1, 0));
    let _c = pool.get().unwrap();
    assert_eq!(pool.counts(), (0, 2, 0));
    drop(b);
    assert_eq!(pool.counts(), (1, 1, 0));
}

#[test]
fn a_connection_the_server_closed_is_not_handed_out_again() {
    let Some(base) = url() else { return };
    let config: tokio_postgres::Config = base.parse().unwrap();
    let pool = Pool::new(
        4,
        Duration::from_secs(1),
        Box::new(move || PgConn::connect(&config, tokio_postgres::NoTls)),
    );
    let pid_of = |conn: &mut PgConn| -> i64 {
        let reader = PgDb::reader(conn);
        let db: &dyn Db = &reader;
        db.scalar("SELECT pg_backend_pid()::BIGINT", &[]).unwrap()
    };
    let mut idle = pool.get().unwrap();
    let mut other = pool.get().unwrap();
    let pid = pid_of(&mut idle);
    assert_ne!(pid_of(&mut other), pid);
    drop(idle);
    assert_eq!(pool.counts(), (1, 1, 0));
    // Another session ends that backend while its connection is idle.
    {
        let reader = PgDb::reader(&mut other);
        let db: &dyn Db = &reader;
        assert!(db
            .scalar::<bool>(&format!("SELECT pg_terminate_backend({pid})"), &[])
            .unwrap());
    }
    drop(other);
    // Idle long enough to be checked before reuse.
    std::thread::sleep(Duration::from_millis(700));
    // Two gets: neither is the closed one, and both answer.
    let mut c1 = pool.get().unwrap();
    let mut c2 = pool.get().unwrap();
    assert_ne!(pid_of(&mut c1), pid);
    assert_ne!(pid_of(&mut c2), pid);
}

#[test]
fn a_refused_connection_is_an_error_at_once() {
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/deputy");
    let config: tokio_postgres::Config = url.parse().unwrap();
    let pool = Pool::new(
        2,
        Duration::from_secs(5),
        Box::new(move || PgConn::connect(&config, tokio_postgres::NoTls)),
    );
    let t = Instant::now();
    assert!(matches!(pool.get(), Err(StoreError::Unavailable(_))));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(pool.counts(), (0, 0, 0));
}

#[test]
fn waiters_are_served_first_come_first_served() {
    let Some(base) = url() else { return };
    let config: tokio_postgres::Config = base.parse().unwrap();
    let pool = Pool::new(
        1,
        Duration::from_secs(10),
        Box::new(move || PgConn::connect(&config, tokio_postgres::NoTls)),
    );
    let held = pool.get().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = |name: &'static str| {
        let (pool, tx) = (pool.clone(), tx.clone());
        std::thread::spawn(move || {
            let conn = pool.get().unwrap();
            tx.send(name).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            drop(conn);
        })
    };
    let queued = |n: usize| {
        let t = Instant::now();
        while pool.counts().2 != n {
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", pool.counts());
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let first = waiter("first");
    queued(1);
    let second = waiter("second");
    queued(2);
    drop(held);
    // Handed straight to the longest waiter: nothing idle for a newcomer.
    assert_eq!(rx.recv().unwrap(), "first");
    assert_eq!(pool.counts().0, 0);
    assert_eq!(rx.recv().unwrap(), "second");
    first.join().unwrap();
    second.join().unwrap();
    assert_eq!(pool.counts(), (1, 0, 0));
}

#[test]
fn a_failed_open_passes_the_turn_so_the_line_fails_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/deputy");
    let config: tokio_postgres::Config = url.parse().unwrap();
    let pool = Pool::new(
        1,
        Duration::from_secs(5),
        Box::new(move || PgConn::connect(&config, tokio_postgres::NoTls)),
    );
    let t = Instant::now();
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || matches!(pool.get(), Err(StoreError::Unavailable(_))))
        })
        .collect();
    for c in callers {
        assert!(c.join().unwrap(), "every caller hears the refusal");
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(pool.counts(), (0, 0, 0));
}
