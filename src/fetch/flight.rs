//! Single flight and negative caching per URL, so callers cannot multiply
//! outbound fetches (OWASP SSRF Prevention Cheat Sheet: a server that
//! fetches on request must not become a traffic amplifier).
//!
//! * Concurrent callers for one URL share one fetch: the first runs it, the
//!   others wait for its outcome. If the one running it is dropped (its HTTP
//!   request went away), a waiter runs the fetch instead; nobody hangs.
//! * A failed fetch is remembered: for a backoff that starts at
//!   `BACKOFF_START` and doubles with each failure in a row up to
//!   `BACKOFF_MAX`, no fetch of that URL is attempted.
//!
//! Futures here need not be `Send`: awc futures are not, and each actix
//! worker runs its own single-threaded runtime. A fetch runs on the worker
//! of the caller that runs it; waiters on other workers are woken by the
//! (thread-safe) cell.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use quick_cache::sync::Cache;
use tokio::sync::OnceCell;

use super::{FetchError, Fetched};

/// What every caller of one flight receives.
pub type Outcome = Result<Arc<Fetched>, FetchError>;

pub const BACKOFF_START: i64 = 30;
pub const BACKOFF_MAX: i64 = 300;

#[derive(Debug, Clone, Copy)]
struct Failure {
    /// No new fetch before this time (seconds, the server clock).
    until: i64,
    /// Failures in a row.
    streak: u32,
}

type Cell = Arc<OnceCell<Outcome>>;

pub struct Flights {
    /// Only flights someone is in (see `Seat`), so bounded by the callers.
    in_flight: Mutex<HashMap<String, Cell>>,
    /// Failures in a row per URL, kept past their backoff so the next
    /// failure waits longer; a success removes them.
    failures: Cache<String, Failure>,
}

impl Flights {
    /// `capacity` bounds the failures remembered (URLs not failing recently
    /// are forgotten first).
    pub fn new(capacity: usize) -> Self {
        Flights {
            in_flight: Mutex::new(HashMap::new()),
            failures: Cache::new(capacity),
        }
    }

    /// Until when fetching `url` is backing off, if it is.
    pub fn backing_off(&self, url: &str, now: i64) -> Option<i64> {
        self.failures
            .get(url)
            .map(|f| f.until)
            .filter(|until| now < *until)
    }

    /// Run `fetch` for `url`, shared with every concurrent caller for the
    /// same URL, unless a recent failure of that URL is still backing off
    /// (`FetchError::BackingOff`, nothing fetched). `now` is the server clock.
    pub async fn run<F, Fut>(&self, url: &str, now: i64, fetch: F) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, FetchError>>,
    {
        if let Some(until) = self.backing_off(url, now) {
            return Err(FetchError::BackingOff { until });
        }
        let seat = self.join(url);
        let Some(cell) = seat.cell.as_deref() else {
            return Err(FetchError::Busy); // not reached: `join` always seats
        };
        cell.get_or_init(|| async {
            // A flight that ended just before this one began may have
            // failed: check again, now that this caller runs the fetch.
            if let Some(until) = self.backing_off(url, now) {
                return Err(FetchError::BackingOff { until });
            }
            let outcome = fetch().await.map(Arc::new);
            self.record(url, &outcome, now);
            outcome
        })
        .await
        .clone()
    }

    fn join(&self, url: &str) -> Seat<'_> {
        let cell = match self.in_flight.lock() {
            Ok(mut map) => map.entry(url.to_string()).or_default().clone(),
            // A poisoned map: fetch alone rather than not at all.
            Err(_) => Cell::default(),
        };
        Seat {
            flights: self,
            url: url.to_string(),
            cell: Some(cell),
        }
    }

    /// A fetch that succeeded but whose answer its user could not use (a
    /// document that is not what it must be): backed off like a failure, so
    /// naming the URL again does not make deputy fetch it again at once.
    pub fn unusable(&self, url: &str, now: i64) {
        self.record(url, &Err(FetchError::Unusable("unusable answer")), now);
    }

    /// Called by the one caller that ran the URL's flight, and a URL has one
    /// flight at a time, so reading the streak and then writing it is not
    /// raced (the exception, a poisoned flight map, can only lose a count).
    fn record(&self, url: &str, outcome: &Outcome, now: i64) {
        let failures = &self.failures;
        match outcome {
            Ok(_) => {
                failures.remove(url);
            }
            // Our own capacity says nothing about the URL.
            Err(FetchError::Busy) | Err(FetchError::BackingOff { .. }) => {}
            Err(_) => {
                let streak = failures.get(url).map_or(1, |f| f.streak.saturating_add(1));
                let backoff = BACKOFF_START
                    .saturating_mul(1_i64 << (streak - 1).min(10))
                    .min(BACKOFF_MAX);
                failures.insert(
                    url.to_string(),
                    Failure {
                        until: now.saturating_add(backoff),
                        streak,
                    },
                );
            }
        }
    }
}

/// One caller's place in a flight. Dropping it (finished or cancelled)
/// removes the flight from the map once it is over or nobody else waits on
/// it, so the map holds only flights someone is in.
struct Seat<'a> {
    flights: &'a Flights,
    url: String,
    /// Always set until `drop` takes it (to let go of it under the lock).
    cell: Option<Cell>,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        let Ok(mut map) = self.flights.in_flight.lock() else {
            return;
        };
        // Under the lock, so no one joins or leaves meanwhile: the count is
        // the map's reference, ours, and one per other caller in the flight.
        if let Some(mine) = self.cell.take() {
            let current = map.get(&self.url).is_some_and(|c| Arc::ptr_eq(c, &mine));
            if current && (mine.initialized() || Arc::strong_count(&mine) <= 2) {
                map.remove(&self.url);
            }
            drop(mine);
        }
    }
}

#[cfg(test)]
impl Flights {
    fn in_flight_len(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell as Counter;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;

    fn fetched() -> Result<Fetched, FetchError> {
        Ok(Fetched {
            body: b"{}".to_vec(),
            max_age: None,
        })
    }

    async fn ok() -> Result<Fetched, FetchError> {
        fetched()
    }

    #[actix_web::test]
    async fn concurrent_callers_share_one_fetch() {
        let flights = Flights::new(10);
        let runs = Rc::new(Counter::new(0));
        let one = |runs: Rc<Counter<u32>>| {
            let flights = &flights;
            async move {
                flights
                    .run("https://k.example/jwks", 100, || async move {
                        runs.set(runs.get() + 1);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        fetched()
                    })
                    .await
            }
        };
        let all = futures_util::future::join_all((0..20).map(|_| one(runs.clone()))).await;
        assert_eq!(runs.get(), 1);
        assert!(all.iter().all(|o| o.is_ok()));
        assert_eq!(flights.in_flight_len(), 0);
        // Over: the next caller fetches again.
        flights
            .run("https://k.example/jwks", 101, ok)
            .await
            .unwrap();
        assert_eq!(flights.in_flight_len(), 0);
    }

    #[actix_web::test]
    async fn a_waiter_takes_over_when_the_runner_is_dropped() {
        let flights = Arc::new(Flights::new(10));
        let url = "https://k.example/jwks";
        let f1 = flights.clone();
        let leader = actix_web::rt::spawn(async move {
            f1.run(url, 100, || {
                std::future::pending::<Result<Fetched, FetchError>>()
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let f2 = flights.clone();
        let waiter = actix_web::rt::spawn(async move { f2.run(url, 100, ok).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits for the running fetch");
        leader.abort();
        let got = tokio::time::timeout(Duration::from_secs(2), waiter).await;
        assert!(
            matches!(got, Ok(Ok(Ok(_)))),
            "the waiter ran the fetch itself"
        );
        assert_eq!(flights.in_flight_len(), 0);
    }

    #[actix_web::test]
    async fn a_dropped_lone_caller_leaves_nothing_behind() {
        let flights = Flights::new(10);
        let fut = flights.run("https://k.example/a", 100, || {
            std::future::pending::<Result<Fetched, FetchError>>()
        });
        let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;
        assert_eq!(flights.in_flight_len(), 0);
    }

    #[actix_web::test]
    async fn failures_back_off_and_the_backoff_grows() {
        let flights = Flights::new(10);
        let url = "https://k.example/jwks";
        let runs = Counter::new(0);
        let fail = || async {
            runs.set(runs.get() + 1);
            Err::<Fetched, _>(FetchError::Status(500))
        };
        assert!(matches!(
            flights.run(url, 1000, fail).await,
            Err(FetchError::Status(500))
        ));
        for t in [1000, 1010, 1029] {
            assert!(matches!(
                flights.run(url, t, fail).await,
                Err(FetchError::BackingOff { until: 1030 })
            ));
        }
        assert_eq!(runs.get(), 1);
        // After the backoff: one more try, which fails, and waits twice as long.
        flights.run(url, 1030, fail).await.unwrap_err();
        assert_eq!(runs.get(), 2);
        assert_eq!(flights.backing_off(url, 1030), Some(1090));
        for _ in 0..20 {
            let until = flights.backing_off(url, 0).unwrap_or(0);
            flights.run(url, until, fail).await.unwrap_err();
        }
        let now = 100_000;
        flights.run(url, now, fail).await.unwrap_err();
        assert_eq!(flights.backing_off(url, now), Some(now + BACKOFF_MAX));
        // Success forgets the failures.
        flights.run(url, now + BACKOFF_MAX, ok).await.unwrap();
        assert_eq!(flights.backing_off(url, now + BACKOFF_MAX), None);
        // Other URLs are not affected by this one.
        assert_eq!(flights.backing_off("https://other.example/", now), None);
    }

    #[actix_web::test]
    async fn our_own_capacity_is_not_held_against_the_url() {
        let flights = Flights::new(10);
        let url = "https://k.example/jwks";
        let busy = || async { Err::<Fetched, _>(FetchError::Busy) };
        assert!(matches!(
            flights.run(url, 1, busy).await,
            Err(FetchError::Busy)
        ));
        assert_eq!(flights.backing_off(url, 1), None);
    }

    #[actix_web::test]
    async fn the_failures_remembered_are_bounded() {
        let flights = Flights::new(10);
        let fail = || async { Err::<Fetched, _>(FetchError::Status(500)) };
        for i in 0..100 {
            let url = format!("https://k{i}.example/jwks");
            flights.run(&url, 1000, fail).await.unwrap_err();
            assert_eq!(flights.backing_off(&url, 1000), Some(1030));
            assert!(flights.failures.len() <= 10);
        }
    }
}
