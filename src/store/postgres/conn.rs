//! One PostgreSQL connection, driven by the thread that uses it.
//!
//! tokio-postgres' usual set-up (and deadpool-postgres') runs each
//! connection as a task on a shared runtime; a job on a blocking thread then
//! hands every statement to that task and is woken by it for the answer:
//! two thread wake-ups per round trip, which the benchmark measured as the
//! larger part of deputy's CPU per request on PostgreSQL. Here each
//! connection has a current-thread runtime of its own, and the job's thread
//! polls the connection itself while it waits: the socket is written and
//! read where the answer is needed.
//!
//! Statements are prepared once per connection, and several can be sent in
//! one round trip (`pipeline`), answered in order.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Row, Socket, Statement};

use super::classify;
use crate::store::db::Value;
use crate::store::{StoreError, StoreResult};

/// Waiting for PostgreSQL to accept a connection.
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Waiting for the answers to one round trip; past it the connection is
/// dropped and the request answered 503. (Locks are bounded server-side by
/// `lock_timeout`, far below this.)
const ANSWER_WAIT: Duration = Duration::from_secs(30);
/// Prepared statements kept per connection (deputy's SQL is a fixed set;
/// the bound only guards against a caller building SQL per request).
const STATEMENTS_KEPT: usize = 512;

type Driver = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;
/// A request on its way, borrowing the client.
type Call<'c, T> = Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + 'c>>;

/// A statement of a pipeline.
pub(super) enum Step<'a> {
    /// Plain SQL without parameters (BEGIN, COMMIT, SAVEPOINT, LOCK ...).
    Simple(&'a str),
    /// A statement whose changed-row count is wanted.
    Execute(&'a str, &'a [Value]),
    /// A statement whose rows are wanted.
    Query(&'a str, &'a [Value]),
}

/// The answer to one step.
pub(super) enum Answer {
    Done,
    Count(u64),
    Rows(Vec<Row>),
}

pub(super) struct PgConn {
    /// `None` only while being dropped.
    rt: Option<Runtime>,
    client: Client,
    /// The connection's I/O; `None` once it ended (the server closed it, it
    /// failed, or an answer took too long).
    driver: Option<Driver>,
    statements: HashMap<String, Statement>,
    /// A transaction was begun here and not ended: such a connection never
    /// goes back to the pool.
    pub(super) in_transaction: bool,
}

impl PgConn {
    pub(super) fn connect<T>(config: &Config, tls: T) -> StoreResult<PgConn>
    where
        T: MakeTlsConnect<Socket> + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot start a runtime: {e}")))?;
        let connected =
            rt.block_on(async { tokio::time::timeout(CONNECT_WAIT, config.connect(tls)).await });
        let (client, connection) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(classify(e)),
            Err(_elapsed) => {
                return Err(StoreError::Unavailable(format!(
                    "PostgreSQL did not accept a connection within {} s",
                    CONNECT_WAIT.as_secs()
                )))
            }
        };
        Ok(PgConn {
            rt: Some(rt),
            client,
            driver: Some(Box::pin(connection)),
            statements: HashMap::new(),
            in_transaction: false,
        })
    }

    /// The connection is still open (a server restart or an idle timeout
    /// closes it while it waits in the pool). Reads what the server sent
    /// meanwhile, without waiting.
    pub(super) fn is_alive(&mut self) -> bool {
        let Some(rt) = self.rt.as_ref() else {
            return false;
        };
        let driver = &mut self.driver;
        rt.block_on(async {
            for _ in 0..2 {
                poll_fn(|cx| {
                    if let Some(d) = driver.as_mut() {
                        if d.as_mut().poll(cx).is_ready() {
                            *driver = None;
                        }
                    }
                    Poll::Ready(())
                })
                .await;
                // Let the runtime look at the socket before the second look.
                tokio::task::yield_now().await;
            }
        });
        self.driver.is_some()
    }

    pub(super) fn is_open(&self) -> bool {
        self.driver.is_some()
    }

    /// Run `f` on the client, polling the connection meanwhile.
    pub(super) fn run<'c, F>(
        &'c mut self,
        f: impl FnOnce(&'c mut Client) -> F,
    ) -> StoreResult<F::Output>
    where
        F: Future + 'c,
    {
        let rt = self.rt.as_ref().ok_or(StoreError::Closed)?;
        drive(rt, &mut self.driver, f(&mut self.client))
    }

    /// Send every step in one round trip and wait for all the answers.
    /// The first failure (in order) is the error; the steps after it have
    /// run in an aborted transaction, or not at all.
    pub(super) fn pipeline(&mut self, steps: &[Step<'_>]) -> StoreResult<Vec<Answer>> {
        self.prepare(steps)?;
        let rt = self.rt.as_ref().ok_or(StoreError::Closed)?;
        let client = &self.client;
        let statements = &self.statements;
        let mut calls: Vec<Call<'_, Answer>> = Vec::with_capacity(steps.len());
        for step in steps {
            calls.push(match *step {
                Step::Simple(sql) => {
                    Box::pin(async move { client.batch_execute(sql).await.map(|()| Answer::Done) })
                }
                Step::Execute(sql, args) => {
                    let st = prepared(statements, sql)?;
                    Box::pin(
                        async move { client.execute(st, &params(args)).await.map(Answer::Count) },
                    )
                }
                Step::Query(sql, args) => {
                    let st = prepared(statements, sql)?;
                    Box::pin(async move { client.query(st, &params(args)).await.map(Answer::Rows) })
                }
            });
        }
        let results = drive(rt, &mut self.driver, all_in_order(calls))?;
        results.into_iter().map(|r| r.map_err(classify)).collect()
    }

    /// Prepare the steps' statements this connection has not prepared yet,
    /// all in one round trip.
    fn prepare(&mut self, steps: &[Step<'_>]) -> StoreResult<()> {
        let mut missing: Vec<&str> = Vec::new();
        for step in steps {
            if let Step::Execute(sql, _) | Step::Query(sql, _) = *step {
                if !self.statements.contains_key(sql) && !missing.contains(&sql) {
                    missing.push(sql);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if self.statements.len() + missing.len() > STATEMENTS_KEPT {
            self.statements.clear();
        }
        let rt = self.rt.as_ref().ok_or(StoreError::Closed)?;
        let client = &self.client;
        let calls: Vec<Call<'_, Statement>> = missing
            .iter()
            .map(|sql| Box::pin(client.prepare(sql)) as Call<'_, Statement>)
            .collect();
        let prepared = drive(rt, &mut self.driver, all_in_order(calls))?;
        for (sql, st) in missing.into_iter().zip(prepared) {
            self.statements
                .insert(sql.to_string(), st.map_err(classify)?);
        }
        Ok(())
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // The socket is deregistered while its runtime still runs; the
        // runtime then stops without blocking (this may be an async thread).
        self.driver = None;
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn prepared<'s>(
    statements: &'s HashMap<String, Statement>,
    sql: &str,
) -> StoreResult<&'s Statement> {
    statements
        .get(sql)
        .ok_or_else(|| StoreError::Database("a statement was not prepared".into()))
}

fn params(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

/// Poll every future in order until all are done: each sends its request
/// on its first poll, so the requests leave in this order, together.
async fn all_in_order<T>(mut calls: Vec<Pin<Box<dyn Future<Output = T> + '_>>>) -> Vec<T> {
    let mut done: Vec<Option<T>> = calls.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (call, slot) in calls.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match call.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// Drive `fut` to its end on `rt`, polling the connection's I/O meanwhile.
fn drive<F: Future>(rt: &Runtime, driver: &mut Option<Driver>, fut: F) -> StoreResult<F::Output> {
    let mut fut = pin!(fut);
    rt.block_on(async {
        let mut deadline = pin!(tokio::time::sleep(ANSWER_WAIT));
        poll_fn(|cx| {
            // The requests go out first, then the connection writes and reads.
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            if let Some(d) = driver.as_mut() {
                if let Poll::Ready(ended) = d.as_mut().poll(cx) {
                    if let Err(e) = ended {
                        tracing::warn!(error = %e, "PostgreSQL connection lost");
                    }
                    // Dropping it fails the requests still waiting for it.
                    *driver = None;
                    if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                        return Poll::Ready(Ok(v));
                    }
                }
            }
            if deadline.as_mut().poll(cx).is_ready() {
                *driver = None;
                return Poll::Ready(Err(StoreError::Unavailable(format!(
                    "PostgreSQL did not answer within {} s",
                    ANSWER_WAIT.as_secs()
                ))));
            }
            Poll::Pending
        })
        .await
    })
}
