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

/// The error for a request over a limit.
pub fn too_many() -> crate::error::OAuthError {
    let mut e = crate::error::OAuthError::new(
        crate::error::ErrorCode::TemporarilyUnavailable,
        "too many requests",
    )
    .with_status(actix_web::http::StatusCode::TOO_MANY_REQUESTS);
    e.retry_after = Some(1);
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
