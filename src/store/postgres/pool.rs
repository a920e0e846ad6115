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

use std::collections::VecDeque;
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
    /// Connections handed out or being opened, and slots handed to a waiter.
    out: usize,
    /// Callers waiting for a connection, longest first.
    waiters: VecDeque<Arc<Waiter>>,
}

/// What a caller that waited is handed: a connection just given back, or
/// the right to open one (the one given back was closed, or opening one
/// failed and the next in line should try, and fail, at once too).
// Moved once per hand-off; boxing would add an allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum Handoff {
    Conn(PgConn),
    Open,
}

/// One waiting caller. First come, first served: a connection given back
/// goes straight to the longest waiter, so a newcomer cannot take it first
/// (with a Condvar alone a waiter could lose to newer callers again and
/// again: measured as a p99 of 106-278 ms for introspection at p50 7 ms).
struct Waiter {
    handed: Mutex<Option<Handoff>>,
    ready: Condvar,
}

struct Inner {
    connect: Connect,
    state: Mutex<State>,
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
                waiters: VecDeque::new(),
            }),
            max,
            wait,
        }))
    }

    /// A live connection: an idle one, or a new one when fewer than `max`
    /// are out; otherwise wait in line up to `wait` for one to come back
    /// (then 503).
    pub(super) fn get(&self) -> StoreResult<Pooled> {
        let inner = &self.0;
        let mut state = lock(&inner.state);
        // Nobody waits: no one to overtake.
        if state.waiters.is_empty() {
            if let Some((since, conn)) = state.idle.pop() {
                state.out += 1;
                drop(state);
                return self.checked(since, conn);
            }
            if state.out < inner.max {
                state.out += 1;
                drop(state);
                return self.open();
            }
        }
        let me = Arc::new(Waiter {
            handed: Mutex::new(None),
            ready: Condvar::new(),
        });
        state.waiters.push_back(me.clone());
        drop(state);
        let deadline = Instant::now() + inner.wait;
        let mut handed = lock_handoff(&me.handed);
        loop {
            if let Some(h) = handed.take() {
                drop(handed);
                return self.take(h);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            handed = match me.ready.wait_timeout(handed, left) {
                Ok((h, _timeout)) => h,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        drop(handed);
        // Out of time: leave the line, unless a hand-off came meanwhile
        // (it is made under the state lock, so it is there by now).
        let mut state = lock(&inner.state);
        if let Some(at) = state.waiters.iter().position(|w| Arc::ptr_eq(w, &me)) {
            state.waiters.remove(at);
            return Err(StoreError::Busy);
        }
        drop(state);
        let late = lock_handoff(&me.handed).take();
        match late {
            Some(h) => self.take(h),
            None => Err(StoreError::Busy),
        }
    }

    fn take(&self, h: Handoff) -> StoreResult<Pooled> {
        match h {
            // Given back a moment ago, open and outside a transaction.
            Handoff::Conn(conn) => Ok(self.loan(conn)),
            Handoff::Open => self.open(),
        }
    }

    /// An idle connection, checked (outside the lock: it reads the socket)
    /// when it sat long enough for the server to have closed it.
    fn checked(&self, since: Instant, mut conn: PgConn) -> StoreResult<Pooled> {
        if since.elapsed() < CHECK_AFTER || conn.is_alive() {
            return Ok(self.loan(conn));
        }
        drop(conn);
        self.open()
    }

    /// Open a connection in a slot already counted in `out`.
    fn open(&self) -> StoreResult<Pooled> {
        match (self.0.connect)() {
            Ok(conn) => Ok(self.loan(conn)),
            Err(e) => {
                self.0.give_back(None);
                Err(e)
            }
        }
    }

    fn loan(&self, conn: PgConn) -> Pooled {
        Pooled {
            conn: Some(conn),
            pool: self.0.clone(),
        }
    }

    /// (idle, out, waiting)
    #[cfg(test)]
    pub(super) fn counts(&self) -> (usize, usize, usize) {
        let s = lock(&self.0.state);
        (s.idle.len(), s.out, s.waiters.len())
    }
}

impl Inner {
    /// A slot comes back, with its connection if that is still usable: to
    /// the longest waiter if there is one, else to the idle list.
    fn give_back(&self, conn: Option<PgConn>) {
        let mut state = lock(&self.state);
        if let Some(next) = state.waiters.pop_front() {
            // Handed over under the state lock (see `get`'s time-out); the
            // slot stays counted in `out`, now the waiter's.
            let mut handed = lock_handoff(&next.handed);
            *handed = Some(match conn {
                Some(c) => Handoff::Conn(c),
                None => Handoff::Open,
            });
            next.ready.notify_one();
            return;
        }
        state.out -= 1;
        if let Some(c) = conn {
            state.idle.push((Instant::now(), c));
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock_handoff(m: &Mutex<Option<Handoff>>) -> MutexGuard<'_, Option<Handoff>> {
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
        self.pool.give_back(keep);
    }
}
