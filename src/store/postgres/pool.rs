//! The connections of one instance: at most `max` open, reused, checked
//! before reuse, opened on demand.
//!
//! A pool of its own rather than r2d2 or deadpool-postgres: deadpool's
//! connections are tasks on a shared runtime (the thread hand-offs
//! `conn.rs` avoids), and r2d2 makes a caller wait its whole timeout while
//! PostgreSQL refuses connections. Here a refused connection is an error at
//! once (503 while PostgreSQL is down, not a queue of requests each waiting
//! 5 s), and a connection that sat idle is checked before it is handed out,
//! so the first requests after a PostgreSQL restart do not fail on stale
//! connections. (One reused within `CHECK_AFTER` is not: under load that
//! check would be a system call per request for nothing.)

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::conn::PgConn;
use crate::store::{StoreError, StoreResult};

type Connect = Box<dyn Fn() -> StoreResult<PgConn> + Send + Sync>;

/// A connection idle longer than this is checked before reuse.
const CHECK_AFTER: Duration = Duration::from_millis(500);

struct State {
    /// Idle connections and when each came back.
    idle: Vec<(Instant, PgConn)>,
    /// Connections handed out or being opened.
    out: usize,
}

struct Inner {
    connect: Connect,
    state: Mutex<State>,
    returned: Condvar,
    max: usize,
    wait: Duration,
}

#[derive(Clone)]
pub(super) struct Pool(Arc<Inner>);

/// A connection on loan; back to the pool when dropped, unless it is
/// closed or still inside a transaction.
pub(super) struct Pooled {
    conn: Option<PgConn>,
    pool: Arc<Inner>,
}

impl Pool {
    pub(super) fn new(max: usize, wait: Duration, connect: Connect) -> Pool {
        Pool(Arc::new(Inner {
            connect,
            state: Mutex::new(State {
                idle: Vec::new(),
                out: 0,
            }),
            returned: Condvar::new(),
            max,
            wait,
        }))
    }

    /// A live connection: an idle one, or a new one when fewer than `max`
    /// are out; otherwise wait up to `wait` for one to come back (then 503).
    pub(super) fn get(&self) -> StoreResult<Pooled> {
        let inner = &self.0;
        let deadline = Instant::now() + inner.wait;
        let mut state = lock(&inner.state);
        loop {
            while let Some((since, mut conn)) = state.idle.pop() {
                // Checked outside the lock: it reads the socket.
                state.out += 1;
                drop(state);
                if since.elapsed() < CHECK_AFTER || conn.is_alive() {
                    return Ok(self.loan(conn));
                }
                drop(conn);
                state = lock(&inner.state);
                state.out -= 1;
            }
            if state.out < inner.max {
                state.out += 1;
                drop(state);
                return match (inner.connect)() {
                    Ok(conn) => Ok(self.loan(conn)),
                    Err(e) => {
                        let mut state = lock(&inner.state);
                        state.out -= 1;
                        inner.returned.notify_one();
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Busy);
            }
            state = match inner.returned.wait_timeout(state, left) {
                Ok((s, _timeout)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn loan(&self, conn: PgConn) -> Pooled {
        Pooled {
            conn: Some(conn),
            pool: self.0.clone(),
        }
    }

    #[cfg(test)]
    pub(super) fn counts(&self) -> (usize, usize) {
        let s = lock(&self.0.state);
        (s.idle.len(), s.out)
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl std::ops::Deref for Pooled {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        // Present from `loan` until `drop`.
        #[allow(clippy::unwrap_used)]
        self.conn.as_ref().unwrap()
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut PgConn {
        #[allow(clippy::unwrap_used)]
        self.conn.as_mut().unwrap()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let keep = self
            .conn
            .take()
            .filter(|c| c.is_open() && !c.in_transaction);
        let mut state = lock(&self.pool.state);
        state.out -= 1;
        if let Some(conn) = keep {
            state.idle.push((Instant::now(), conn));
        }
        drop(state);
        self.pool.returned.notify_one();
    }
}
