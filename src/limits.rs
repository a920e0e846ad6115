//! Request rate limits (RFC 6749 §10.10 and RFC 6819 §5.1.4.2.3: limit the
//! rate of attempts). A fixed one-second window per key; over the limit the
//! answer is 429 with `Retry-After`. In memory and sharded, so it costs a
//! hash and a short lock per request. Per instance: several instances behind
//! a proxy each count their own requests.
//!
//! Memory is bounded: each shard remembers at most `PER_SHARD` keys and forgets
//! the least recently used one to make room, in O(1). The least recently used
//! key is the stalest, so a key still counting in the current second is only
//! forgotten when more than `SHARDS * PER_SHARD` other keys were seen since
//! its last request — then that key starts again from zero (the limit fails
//! open rather than refusing new keys).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;

use hashlink::LruCache;

const SHARDS: usize = 16;
/// Keys remembered per shard (131,072 in all, a few MiB).
const PER_SHARD: usize = 8192;

type Shard = Mutex<LruCache<String, (i64, u32), RandomState>>;

pub struct RateLimiter {
    per_second: u32,
    shards: Vec<Shard>,
}

impl RateLimiter {
    /// `per_second == 0` disables the limit.
    pub fn new(per_second: u32) -> Self {
        Self::with_capacity(per_second, PER_SHARD)
    }

    fn with_capacity(per_second: u32, per_shard: usize) -> Self {
        RateLimiter {
            per_second,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::with_hasher(per_shard, RandomState::new())))
                .collect(),
        }
    }

    fn shard(&self, key: &str) -> Option<&Shard> {
        let h = key
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        self.shards.get(h % SHARDS)
    }

    /// Count one request for `key` at `now`; false when it is over the limit.
    pub fn allow(&self, key: &str, now: i64) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let Some(shard) = self.shard(key) else {
            return true;
        };
        let Ok(mut map) = shard.lock() else {
            return true;
        };
        let count = match map.get_mut(key) {
            Some(entry) => {
                if entry.0 != now {
                    *entry = (now, 0);
                }
                entry.1 = entry.1.saturating_add(1);
                entry.1
            }
            None => {
                // Full: the least recently used key goes (O(1)).
                map.insert(key.to_string(), (now, 1));
                1
            }
        };
        count <= self.per_second
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

/// A budget of failures (failed client authentications) per key in a fixed
/// window of `window` seconds: the first `limit` failures in a window are
/// within it, every further one is over it until the window ends. Only
/// failures are counted, so a caller that succeeds never spends it. Per
/// instance, bounded like `RateLimiter` (keys are stored as a keyed hash, so a
/// long key costs no more memory than a short one).
pub struct FailureBudget {
    limit: u32,
    window: i64,
    shards: Vec<Mutex<LruCache<u64, (i64, u32)>>>,
    keys: RandomState,
}

/// What one more failure did to a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Within,
    /// Over the budget: wait `retry_after` seconds for the window to end.
    /// `first` when this failure is the one that went over (for a log line).
    Over {
        retry_after: u64,
        first: bool,
    },
}

impl FailureBudget {
    /// `limit == 0` disables the budget.
    pub fn new(limit: u32, window: i64) -> Self {
        FailureBudget {
            limit,
            window: window.max(1),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(PER_SHARD)))
                .collect(),
            keys: RandomState::new(),
        }
    }

    /// Count one failure against each of `keys` at `now`.
    pub fn fail(&self, keys: &[&str], now: i64) -> Spent {
        if self.limit == 0 {
            return Spent::Within;
        }
        let mut spent = Spent::Within;
        for key in keys {
            let h = self.keys.hash_one(key);
            let Some(shard) = self.shards.get((h % SHARDS as u64) as usize) else {
                continue;
            };
            let Ok(mut map) = shard.lock() else {
                continue;
            };
            let entry = match map.get_mut(&h) {
                Some(e) => e,
                None => {
                    map.insert(h, (now, 0));
                    match map.get_mut(&h) {
                        Some(e) => e,
                        None => continue,
                    }
                }
            };
            if now >= entry.0 + self.window || now < entry.0 {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
            if entry.1 > self.limit {
                let wait = (entry.0 + self.window - now).max(1) as u64;
                let first = entry.1 == self.limit + 1;
                spent = match spent {
                    Spent::Over {
                        retry_after,
                        first: f,
                    } => Spent::Over {
                        retry_after: retry_after.max(wait),
                        first: f || first,
                    },
                    Spent::Within => Spent::Over {
                        retry_after: wait,
                        first,
                    },
                };
            }
        }
        spent
    }
}

/// The error for a request over a limit.
pub fn too_many() -> crate::error::OAuthError {
    too_many_after(1)
}

/// The error for a request over a limit, to be retried after `secs` seconds.
pub fn too_many_after(secs: u64) -> crate::error::OAuthError {
    let mut e = crate::error::OAuthError::new(
        crate::error::ErrorCode::TemporarilyUnavailable,
        "too many requests",
    )
    .with_status(actix_web::http::StatusCode::TOO_MANY_REQUESTS);
    e.retry_after = Some(secs.max(1));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_limits_and_resets() {
        let r = RateLimiter::new(3);
        assert!(r.allow("a", 10) && r.allow("a", 10) && r.allow("a", 10));
        assert!(!r.allow("a", 10));
        assert!(r.allow("b", 10), "keys are independent");
        assert!(r.allow("a", 11), "a new second, a new window");
        let off = RateLimiter::new(0);
        assert!((0..1000).all(|_| off.allow("a", 1)));
    }

    #[test]
    fn failure_budget_per_key_and_window() {
        let b = FailureBudget::new(3, 10);
        for _ in 0..3 {
            assert_eq!(b.fail(&["a:1", "c:x"], 100), Spent::Within);
        }
        assert_eq!(
            b.fail(&["a:1", "c:x"], 104),
            Spent::Over {
                retry_after: 6,
                first: true
            }
        );
        assert_eq!(
            b.fail(&["a:2", "c:x"], 109),
            Spent::Over {
                retry_after: 1,
                first: false
            },
            "the client id's budget is spent from any address"
        );
        assert_eq!(b.fail(&["a:2", "c:y"], 109), Spent::Within);
        assert_eq!(b.fail(&["a:1", "c:x"], 110), Spent::Within, "a new window");
        let off = FailureBudget::new(0, 10);
        assert!((0..1000).all(|_| off.fail(&["a:1"], 1) == Spent::Within));
    }

    #[test]
    fn memory_is_bounded_and_a_busy_key_keeps_its_count() {
        let r = RateLimiter::with_capacity(3, 4);
        assert!(r.allow("busy", 10) && r.allow("busy", 10) && r.allow("busy", 10));
        for i in 0..10_000 {
            assert!(r.allow(&format!("k{i}"), 10));
            if i % 2 == 0 {
                // Still over its limit: its count was not forgotten.
                assert!(!r.allow("busy", 10), "after {i} other keys");
            }
        }
        assert!(r.len() <= SHARDS * 4, "{} keys kept", r.len());
    }
}
