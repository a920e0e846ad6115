//! Request rate limits (RFC 6749 §10.10 and RFC 6819 §5.1.4.2.3: limit the
//! rate of attempts). A fixed one-second window per key; over the limit the
//! answer is 429 with `Retry-After`. In memory and sharded, so it costs a
//! hash and a short lock per request.

use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 16;

pub struct RateLimiter {
    per_second: u32,
    shards: Vec<Mutex<HashMap<String, (i64, u32)>>>,
}

impl RateLimiter {
    /// `per_second == 0` disables the limit.
    pub fn new(per_second: u32) -> Self {
        RateLimiter {
            per_second,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &str) -> Option<&Mutex<HashMap<String, (i64, u32)>>> {
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
        if map.len() > 50_000 {
            map.retain(|_, (w, _)| *w >= now - 1);
        }
        let entry = map.entry(key.to_string()).or_insert((now, 0));
        if entry.0 != now {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_second
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
}
