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

    /// Check and count an attempt in one step, before the password is
    /// verified, so concurrent guesses cannot all pass the check first.
    /// `Err(wait)` when the account or address must wait.
    pub fn reserve(&self, username: &str, address: &str, now: i64) -> Result<(), i64> {
        let Ok(mut map) = self.map.lock() else {
            return Ok(());
        };
        let (account, addr) = (
            format!("u:{}", username.to_lowercase()),
            format!("a:{address}"),
        );
        let wait = [&account, &addr]
            .iter()
            .filter_map(|k| {
                map.get(*k)
                    .filter(|r| r.locked_until > now)
                    .map(|r| r.locked_until - now)
            })
            .max();
        if let Some(w) = wait {
            return Err(w);
        }
        if map.len() > 100_000 {
            map.retain(|_, r| now - r.last_failure < FORGET_AFTER);
        }
        for (key, free) in [(account, ACCOUNT_FREE), (addr, ADDRESS_FREE)] {
            let r = map.entry(key).or_default();
            if now - r.last_failure > FORGET_AFTER {
                *r = Record::default();
            }
            r.failures += 1;
            r.last_failure = now;
            r.locked_until = now + wait_for(r.failures, free);
        }
        Ok(())
    }

    /// The reserved attempt succeeded: clear the account, give the address its attempt back.
    pub fn settle_success(&self, username: &str, address: &str, now: i64) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&format!("u:{}", username.to_lowercase()));
            if let Some(r) = map.get_mut(&format!("a:{address}")) {
                r.failures = r.failures.saturating_sub(1);
                r.locked_until = if r.failures == 0 {
                    0
                } else {
                    r.last_failure + wait_for(r.failures, ADDRESS_FREE)
                };
                let _ = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_before_verification() {
        let t = Throttle::default();
        // Many concurrent attempts: only the free ones get through the check.
        let passed = (0..50)
            .filter(|_| t.reserve("bob", "5.5.5.5", 100).is_ok())
            .count();
        assert_eq!(passed, ACCOUNT_FREE as usize);
        // A success gives the address its attempt back and clears the account.
        let t = Throttle::default();
        for _ in 0..3 {
            t.reserve("carol", "6.6.6.6", 100).unwrap();
            t.settle_success("carol", "6.6.6.6", 100);
        }
        assert!(t.reserve("carol", "6.6.6.6", 100).is_ok());
    }

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
