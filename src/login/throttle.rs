//! Failed-login throttling per account and per address (OWASP ASVS 2.2.1):
//! after a few failures each further attempt must wait, doubling up to a cap.
//! Kept in memory: a restart forgets it, which only ever helps the person.

use std::collections::HashMap;
use std::sync::Mutex;

/// Failures allowed before waits begin.
const ACCOUNT_FREE: u32 = 5;
const ADDRESS_FREE: u32 = 20;
const BASE_WAIT: i64 = 5;
const MAX_WAIT: i64 = 900;
/// A quiet period after which old failures are forgotten.
const FORGET_AFTER: i64 = 3600;

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    failures: u32,
    last_failure: i64,
    locked_until: i64,
}

#[derive(Default)]
pub struct Throttle {
    map: Mutex<HashMap<String, Record>>,
}

fn wait_for(failures: u32, free: u32) -> i64 {
    if failures < free {
        return 0;
    }
    let exp = (failures - free).min(16);
    (BASE_WAIT << exp).min(MAX_WAIT)
}

impl Throttle {
    fn locked(&self, key: &str, now: i64) -> Option<i64> {
        let map = self.map.lock().ok()?;
        let r = map.get(key)?;
        (r.locked_until > now).then_some(r.locked_until - now)
    }

    /// Seconds to wait before another attempt for this account or address.
    pub fn retry_after(&self, username: &str, address: &str, now: i64) -> Option<i64> {
        let a = self.locked(&format!("u:{}", username.to_lowercase()), now);
        let b = self.locked(&format!("a:{address}"), now);
        a.max(b)
    }

    fn fail(&self, key: String, free: u32, now: i64) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() > 100_000 {
                map.retain(|_, r| now - r.last_failure < FORGET_AFTER);
            }
            let r = map.entry(key).or_default();
            if now - r.last_failure > FORGET_AFTER {
                *r = Record::default();
            }
            r.failures += 1;
            r.last_failure = now;
            r.locked_until = now + wait_for(r.failures, free);
        }
    }

    pub fn record_failure(&self, username: &str, address: &str, now: i64) {
        self.fail(format!("u:{}", username.to_lowercase()), ACCOUNT_FREE, now);
        self.fail(format!("a:{address}"), ADDRESS_FREE, now);
    }

    /// A successful login clears the account's record (not the address's).
    pub fn record_success(&self, username: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&format!("u:{}", username.to_lowercase()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_after_the_free_attempts_and_success_resets() {
        let t = Throttle::default();
        for i in 0..ACCOUNT_FREE - 1 {
            t.record_failure("alice", "1.2.3.4", 100 + i as i64);
            assert_eq!(t.retry_after("alice", "1.2.3.4", 100 + i as i64), None);
        }
        t.record_failure("alice", "1.2.3.4", 110);
        assert_eq!(t.retry_after("ALICE", "9.9.9.9", 110), Some(BASE_WAIT));
        t.record_failure("alice", "1.2.3.4", 110);
        assert_eq!(t.retry_after("alice", "9.9.9.9", 110), Some(BASE_WAIT * 2));
        assert_eq!(t.retry_after("alice", "9.9.9.9", 110 + BASE_WAIT * 2), None);
        t.record_success("alice");
        assert_eq!(t.retry_after("alice", "9.9.9.9", 111), None);
    }

    #[test]
    fn an_address_spraying_many_accounts_is_throttled() {
        let t = Throttle::default();
        for i in 0..ADDRESS_FREE {
            t.record_failure(&format!("user{i}"), "6.6.6.6", 100);
        }
        assert!(t.retry_after("someone-new", "6.6.6.6", 100).is_some());
        assert!(t.retry_after("someone-new", "7.7.7.7", 100).is_none());
    }
}
