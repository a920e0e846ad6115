//! Failed-login throttling per account and per address (OWASP ASVS 2.2.1):
//! after a few failures each further attempt must wait, doubling up to a cap.
//! Kept in memory, per instance: a restart forgets it, which only ever helps
//! the person.
//!
//! Memory is bounded: at most `CAPACITY` records (accounts and addresses
//! together), keyed by a keyed hash of the name so a long name costs no more
//! than a short one. When full, the least recently touched record is forgotten
//! in O(1) — never a scan under the lock. A record an attacker is still
//! hitting is the most recently touched one, so pushing it out takes
//! `CAPACITY` attempts for other names in between.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;

use hashlink::LruCache;

/// Failures allowed before waits begin.
const ACCOUNT_FREE: u32 = 5;
const ADDRESS_FREE: u32 = 20;
const BASE_WAIT: i64 = 5;
const MAX_WAIT: i64 = 900;
/// A quiet period after which old failures are forgotten.
const FORGET_AFTER: i64 = 3600;
/// Records kept at most (a few MiB).
const CAPACITY: usize = 100_000;

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    failures: u32,
    last_failure: i64,
    locked_until: i64,
}

pub struct Throttle {
    map: Mutex<LruCache<u64, Record>>,
    keys: RandomState,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

fn wait_for(failures: u32, free: u32) -> i64 {
    if failures < free {
        return 0;
    }
    let exp = (failures - free).min(16);
    (BASE_WAIT << exp).min(MAX_WAIT)
}

impl Throttle {
    fn with_capacity(capacity: usize) -> Self {
        Throttle {
            map: Mutex::new(LruCache::new(capacity)),
            keys: RandomState::new(),
        }
    }

    fn account(&self, username: &str) -> u64 {
        self.keys.hash_one(("u", username.to_lowercase()))
    }

    fn address(&self, address: &str) -> u64 {
        self.keys.hash_one(("a", address))
    }

    /// Count a failure for `key` (the least recently used record makes room).
    fn count(map: &mut LruCache<u64, Record>, key: u64, free: u32, now: i64) {
        if map.get_mut(&key).is_none() {
            map.insert(key, Record::default());
        }
        if let Some(r) = map.get_mut(&key) {
            if now - r.last_failure > FORGET_AFTER {
                *r = Record::default();
            }
            r.failures = r.failures.saturating_add(1);
            r.last_failure = now;
            r.locked_until = now + wait_for(r.failures, free);
        }
    }

    /// Check and count an attempt in one step, before the password is
    /// verified, so concurrent guesses cannot all pass the check first.
    /// `Err(wait)` when the account or address must wait.
    pub fn reserve(&self, username: &str, address: &str, now: i64) -> Result<(), i64> {
        let (account, addr) = (self.account(username), self.address(address));
        let Ok(mut map) = self.map.lock() else {
            return Ok(());
        };
        // `get` marks a record as used: one still being hit is not the one
        // that makes room.
        let mut wait = None;
        for k in [account, addr] {
            if let Some(r) = map.get(&k).filter(|r| r.locked_until > now) {
                wait = wait.max(Some(r.locked_until - now));
            }
        }
        if let Some(w) = wait {
            return Err(w);
        }
        Self::count(&mut map, account, ACCOUNT_FREE, now);
        Self::count(&mut map, addr, ADDRESS_FREE, now);
        Ok(())
    }

    /// The reserved attempt succeeded: clear the account, give the address its attempt back.
    pub fn settle_success(&self, username: &str, address: &str, now: i64) {
        let (account, addr) = (self.account(username), self.address(address));
        if let Ok(mut map) = self.map.lock() {
            map.remove(&account);
            if let Some(r) = map.get_mut(&addr) {
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

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
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

    /// An attempt that is reserved and never settled is a failure.
    #[test]
    fn waits_grow_after_the_free_attempts_and_success_resets() {
        let t = Throttle::default();
        for i in 0..ACCOUNT_FREE - 1 {
            assert_eq!(t.reserve("alice", "1.2.3.4", 100 + i as i64), Ok(()));
        }
        // The last free attempt fails too: now the account waits, from any
        // address and however the name is written.
        assert_eq!(t.reserve("alice", "1.2.3.4", 110), Ok(()));
        assert_eq!(t.reserve("ALICE", "9.9.9.9", 110), Err(BASE_WAIT));
        assert_eq!(t.reserve("alice", "9.9.9.9", 110 + BASE_WAIT - 1), Err(1));
        // After the wait, one more attempt; failing it doubles the wait.
        let now = 110 + BASE_WAIT;
        assert_eq!(t.reserve("alice", "9.9.9.9", now), Ok(()));
        assert_eq!(t.reserve("alice", "9.9.9.9", now), Err(BASE_WAIT * 2));
        // A success clears the account.
        let now = now + BASE_WAIT * 2;
        assert_eq!(t.reserve("alice", "9.9.9.9", now), Ok(()));
        t.settle_success("alice", "9.9.9.9", now);
        for _ in 0..ACCOUNT_FREE {
            assert_eq!(t.reserve("alice", "9.9.9.9", now), Ok(()));
        }
    }

    #[test]
    fn an_address_spraying_many_accounts_is_throttled() {
        let t = Throttle::default();
        for i in 0..ADDRESS_FREE {
            assert_eq!(t.reserve(&format!("user{i}"), "6.6.6.6", 100), Ok(()));
        }
        assert_eq!(t.reserve("someone-new", "6.6.6.6", 100), Err(BASE_WAIT));
        assert_eq!(t.reserve("someone-new", "7.7.7.7", 100), Ok(()));
    }

    #[test]
    fn memory_is_bounded_and_a_record_under_attack_stays() {
        let t = Throttle::with_capacity(50);
        for _ in 0..ACCOUNT_FREE {
            assert_eq!(t.reserve("victim", "9.9.9.9", 200), Ok(()));
        }
        // Spraying names from many addresses fills the map; the victim's
        // account, still being guessed, keeps its lock.
        for i in 0..10_000 {
            let _ = t.reserve(
                &format!("spray{i}"),
                &format!("10.0.{}.{}", i / 256, i % 256),
                201,
            );
            if i % 10 == 0 {
                assert_eq!(t.reserve("victim", "8.8.8.8", 201), Err(4), "after {i}");
            }
        }
        assert!(t.len() <= 50, "{} records kept", t.len());
    }
}
