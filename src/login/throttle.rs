//! Failed-login throttling per account and per address (OWASP ASVS 2.2.1):
//! after a few failures each further attempt must wait, doubling up to a cap.
//!
//! The account's count is in the database (`store::login_failures`), so it
//! holds across instances: N instances do not give N times the free guesses.
//! It is keyed by an HMAC of the lowercased name under a server secret shared
//! through the database, so the table names no one (nor the passwords people
//! type into the name field).
//!
//! The address's count is kept in memory, per instance, like the other
//! per-address limits: a restart forgets it, which only ever helps the
//! person. Memory is bounded: at most `CAPACITY` addresses, keyed by a keyed
//! hash. When full, the least recently touched record is forgotten in O(1) —
//! never a scan under the lock. A record an attacker is still hitting is the
//! most recently touched one, so pushing it out takes `CAPACITY` attempts for
//! other addresses in between.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, OnceLock};

use hashlink::LruCache;

use crate::error::OAuthError;
use crate::store::login_failures::{self, Policy};
use crate::store::Store;

/// Failures allowed before waits begin.
const ACCOUNT_FREE: u32 = 5;
const ADDRESS_FREE: u32 = 20;
const BASE_WAIT: i64 = 5;
const MAX_WAIT: i64 = 900;
/// A quiet period after which old failures are forgotten.
pub const FORGET_AFTER: i64 = 3600;
/// Address records kept at most (a few MiB).
const CAPACITY: usize = 100_000;

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    failures: u32,
    last_failure: i64,
    locked_until: i64,
}

pub struct Throttle {
    addresses: Mutex<LruCache<u64, Record>>,
    keys: RandomState,
    /// The server secret account keys are derived with (loaded once).
    account_secret: OnceLock<String>,
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

fn account_wait(failures: u32) -> i64 {
    wait_for(failures, ACCOUNT_FREE)
}

const ACCOUNT_POLICY: Policy<'static> = Policy {
    forget_after: FORGET_AFTER,
    wait_for: &account_wait,
};

impl Throttle {
    fn with_capacity(capacity: usize) -> Self {
        Throttle {
            addresses: Mutex::new(LruCache::new(capacity)),
            keys: RandomState::new(),
            account_secret: OnceLock::new(),
        }
    }

    fn address(&self, address: &str) -> u64 {
        self.keys.hash_one(address)
    }

    /// The account's key in `login_failures`: the same on every instance,
    /// however the name is written.
    async fn account(&self, store: &Store, username: &str) -> Result<String, OAuthError> {
        let secret = match self.account_secret.get() {
            Some(s) => s.clone(),
            None => {
                let s = store
                    .write(|c| crate::store::refresh::server_secret(c, "login-account"))
                    .await?;
                self.account_secret.get_or_init(|| s).clone()
            }
        };
        crate::secret::hmac_b64(
            &secret,
            "deputy login account",
            username.to_lowercase().as_bytes(),
        )
        .map_err(OAuthError::server_error)
    }

    /// Check and count an attempt from `address` in one step.
    fn reserve_address(&self, address: &str, now: i64) -> Result<(), i64> {
        let key = self.address(address);
        let Ok(mut map) = self.addresses.lock() else {
            return Ok(());
        };
        // `get` marks a record as used: one still being hit is not the one
        // that makes room.
        if let Some(r) = map.get(&key).filter(|r| r.locked_until > now) {
            return Err(r.locked_until - now);
        }
        if map.get_mut(&key).is_none() {
            map.insert(key, Record::default());
        }
        if let Some(r) = map.get_mut(&key) {
            if now - r.last_failure > FORGET_AFTER {
                *r = Record::default();
            }
            r.failures = r.failures.saturating_add(1);
            r.last_failure = now;
            r.locked_until = now + wait_for(r.failures, ADDRESS_FREE);
        }
        Ok(())
    }

    /// Give the address back an attempt it reserved (it succeeded, or was
    /// never tried).
    fn refund_address(&self, address: &str) {
        let key = self.address(address);
        if let Ok(mut map) = self.addresses.lock() {
            if let Some(r) = map.get_mut(&key) {
                r.failures = r.failures.saturating_sub(1);
                r.locked_until = if r.failures == 0 {
                    0
                } else {
                    r.last_failure + wait_for(r.failures, ADDRESS_FREE)
                };
            }
        }
    }

    /// Check and count an attempt before the (slow) password verification,
    /// atomically with the check, so concurrent guesses — on this instance
    /// or another — cannot all pass the check first. `Ok(Err(wait))` when
    /// the account or the address must wait; then nothing is counted. A
    /// store failure is an error (503), never a free attempt.
    pub async fn reserve(
        &self,
        store: &Store,
        username: &str,
        address: &str,
        now: i64,
    ) -> Result<Result<(), i64>, OAuthError> {
        if let Err(wait) = self.reserve_address(address, now) {
            return Ok(Err(wait));
        }
        let counted = match self.account(store, username).await {
            Ok(account) => {
                store
                    .write(move |c| login_failures::reserve(c, &account, now, &ACCOUNT_POLICY))
                    .await
            }
            Err(e) => {
                self.refund_address(address);
                return Err(e);
            }
        };
        match counted {
            Ok(Ok(())) => Ok(Ok(())),
            Ok(Err(wait)) => {
                self.refund_address(address);
                Ok(Err(wait))
            }
            Err(e) => {
                self.refund_address(address);
                Err(e.into())
            }
        }
    }

    /// The reserved attempt succeeded: clear the account, give the address
    /// its attempt back.
    pub async fn settle_success(
        &self,
        store: &Store,
        username: &str,
        address: &str,
    ) -> Result<(), OAuthError> {
        self.refund_address(address);
        let account = self.account(store, username).await?;
        store
            .write(move |c| login_failures::clear(c, &account))
            .await?;
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.addresses.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_reservations_count_before_verification() {
        let t = Throttle::default();
        // Many concurrent attempts: only the free ones get through the check.
        let passed = (0..50)
            .filter(|_| t.reserve_address("5.5.5.5", 100).is_ok())
            .count();
        assert_eq!(passed, ADDRESS_FREE as usize);
        // A refund (success) gives the address its attempt back.
        let t = Throttle::default();
        for _ in 0..30 {
            t.reserve_address("6.6.6.6", 100).unwrap();
            t.refund_address("6.6.6.6");
        }
        assert!(t.reserve_address("6.6.6.6", 100).is_ok());
    }

    #[test]
    fn waits_grow_after_the_free_attempts() {
        assert_eq!(account_wait(ACCOUNT_FREE - 1), 0);
        assert_eq!(account_wait(ACCOUNT_FREE), BASE_WAIT);
        assert_eq!(account_wait(ACCOUNT_FREE + 1), BASE_WAIT * 2);
        assert_eq!(account_wait(ACCOUNT_FREE + 3), BASE_WAIT * 8);
        assert_eq!(account_wait(u32::MAX), MAX_WAIT);
        let t = Throttle::default();
        for _ in 0..ADDRESS_FREE {
            assert_eq!(t.reserve_address("6.6.6.6", 100), Ok(()));
        }
        assert_eq!(t.reserve_address("6.6.6.6", 100), Err(BASE_WAIT));
        assert_eq!(t.reserve_address("6.6.6.6", 100 + BASE_WAIT - 1), Err(1));
        assert_eq!(t.reserve_address("6.6.6.6", 100 + BASE_WAIT), Ok(()));
        assert_eq!(
            t.reserve_address("6.6.6.6", 100 + BASE_WAIT),
            Err(BASE_WAIT * 2)
        );
        assert_eq!(t.reserve_address("7.7.7.7", 100), Ok(()));
    }

    #[test]
    fn memory_is_bounded_and_a_record_under_attack_stays() {
        let t = Throttle::with_capacity(50);
        for _ in 0..ADDRESS_FREE {
            assert_eq!(t.reserve_address("9.9.9.9", 200), Ok(()));
        }
        // Many other addresses fill the map; the one still attacking keeps
        // its lock.
        for i in 0..10_000 {
            let _ = t.reserve_address(&format!("10.0.{}.{}", i / 256, i % 256), 201);
            if i % 10 == 0 {
                assert_eq!(t.reserve_address("9.9.9.9", 201), Err(4), "after {i}");
            }
        }
        assert!(t.len() <= 50, "{} records kept", t.len());
    }
}
