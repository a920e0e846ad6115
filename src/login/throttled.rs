//! Throttled login attempts in the audit trail: one `login_throttled` event
//! per burst instead of one row per attempt, so a flood of refused attempts
//! cannot grow the append-only `audit_events` table at its own pace.
//!
//! A burst is the throttled attempts for one account (or for unknown names,
//! all of them together) from one address. It ends when no attempt came for
//! `QUIET` seconds; one that goes on is cut every `MAX_SPAN` seconds and
//! continues as a new burst, so the trail is never far behind. Ended bursts
//! are written by `flush` (the server's housekeeping calls it every two
//! seconds and once at shutdown). Kept in memory, per instance, bounded.

use std::sync::Mutex;

use hashlink::LruCache;

use crate::audit::{AuditEvent, Mode};

/// A burst with no attempt for this long has ended.
pub const QUIET: i64 = 10;
/// A burst this old is written even while it goes on.
pub const MAX_SPAN: i64 = 60;
/// Open bursts kept at most; when full, the quietest one is closed early.
const OPEN_CAPACITY: usize = 10_000;
/// Closed bursts waiting for the next flush, at most.
const CLOSED_CAPACITY: usize = 10_000;

/// Whose attempts, from where. `person` is None for names that are no account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    person: Option<String>,
    address: String,
}

/// Throttled attempts for one account (or unknown names) from one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    pub person: Option<String>,
    pub address: String,
    /// The client of the burst's first attempt; empty for a sign-in to the
    /// person's own account page.
    pub client_id: String,
    pub count: u64,
    pub first_at: i64,
    pub last_at: i64,
}

impl Burst {
    fn due(&self, now: i64) -> bool {
        now.saturating_sub(self.last_at) >= QUIET || now.saturating_sub(self.first_at) >= MAX_SPAN
    }

    /// The audit event: never the typed name or password, only whether the
    /// name is an account's (and then whose, as `person`).
    pub fn event(&self) -> AuditEvent {
        let mut e = AuditEvent::new(self.last_at, "login_throttled", Mode::Person)
            .refused("throttled")
            .person(self.person.as_deref())
            .detail(serde_json::json!({
                "address": self.address,
                "username_known": self.person.is_some(),
                "count": self.count,
                "first_at": self.first_at,
                "last_at": self.last_at,
            }));
        e.client_id = (!self.client_id.is_empty()).then(|| self.client_id.clone());
        e
    }
}

struct Inner {
    open: LruCache<Key, Burst>,
    closed: Vec<Burst>,
    /// Attempts in bursts that found no room (reported in the log).
    dropped: u64,
}

impl Inner {
    fn close(&mut self, burst: Burst) {
        if self.closed.len() < CLOSED_CAPACITY {
            self.closed.push(burst);
        } else {
            self.dropped = self.dropped.saturating_add(burst.count);
        }
    }
}

pub struct ThrottledLogins {
    inner: Mutex<Inner>,
}

impl Default for ThrottledLogins {
    fn default() -> Self {
        Self::with_capacity(OPEN_CAPACITY)
    }
}

/// What `take_due` hands to the writer.
#[derive(Debug, Default)]
pub struct Due {
    pub bursts: Vec<Burst>,
    /// Throttled attempts that could not be kept (too many bursts at once).
    pub dropped: u64,
}

impl ThrottledLogins {
    fn with_capacity(open: usize) -> Self {
        ThrottledLogins {
            inner: Mutex::new(Inner {
                open: LruCache::new(open),
                closed: Vec::new(),
                dropped: 0,
            }),
        }
    }

    /// Count one throttled attempt. O(1): a full map closes its quietest
    /// burst (the least recently used) to make room.
    pub fn record(&self, person: Option<String>, address: &str, client_id: &str, now: i64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let key = Key {
            person,
            address: address.to_string(),
        };
        if let Some(b) = inner.open.get_mut(&key) {
            if !b.due(now) {
                b.count = b.count.saturating_add(1);
                b.last_at = now;
                return;
            }
        }
        // Not open, or due and not flushed yet: close it, start a new one.
        if let Some(old) = inner.open.remove(&key) {
            inner.close(old);
        }
        if inner.open.len() >= inner.open.capacity() {
            if let Some((_, quietest)) = inner.open.remove_lru() {
                inner.close(quietest);
            }
        }
        let burst = Burst {
            person: key.person.clone(),
            address: key.address.clone(),
            client_id: client_id.to_string(),
            count: 1,
            first_at: now,
            last_at: now,
        };
        inner.open.insert(key, burst);
    }

    /// Take the bursts to write at `now`: the closed ones and the open ones
    /// that are due. `i64::MAX` takes every burst (shutdown).
    pub fn take_due(&self, now: i64) -> Due {
        let Ok(mut inner) = self.inner.lock() else {
            return Due::default();
        };
        let due: Vec<Key> = inner
            .open
            .iter()
            .filter(|(_, b)| b.due(now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut bursts = std::mem::take(&mut inner.closed);
        bursts.extend(due.iter().filter_map(|k| inner.open.remove(k)));
        Due {
            bursts,
            dropped: std::mem::take(&mut inner.dropped),
        }
    }

    /// Put back bursts a failed write did not record.
    pub fn put_back(&self, bursts: Vec<Burst>) {
        if let Ok(mut inner) = self.inner.lock() {
            for b in bursts {
                inner.close(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Option<String> {
        Some("person-alice".to_string())
    }

    #[test]
    fn a_burst_is_one_event_after_the_quiet_period() {
        let t = ThrottledLogins::default();
        for i in 0..50 {
            t.record(alice(), "1.2.3.4", "web", 100 + i / 10);
        }
        assert!(t.take_due(104 + QUIET - 1).bursts.is_empty());
        let due = t.take_due(104 + QUIET);
        assert_eq!(due.bursts.len(), 1);
        let e = due.bursts[0].event();
        assert_eq!(
            (e.event.as_str(), e.mode.as_str(), e.outcome.as_str()),
            ("login_throttled", "person", "refused")
        );
        assert_eq!(e.person, alice());
        assert_eq!(e.client_id.as_deref(), Some("web"));
        let detail: serde_json::Value = serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
        assert_eq!(
            detail,
            serde_json::json!({"address": "1.2.3.4", "username_known": true,
                               "count": 50, "first_at": 100, "last_at": 104})
        );
        assert!(t.take_due(1000).bursts.is_empty(), "written once");
    }

    #[test]
    fn a_long_burst_is_cut_every_max_span_and_goes_on() {
        let t = ThrottledLogins::default();
        // One attempt every 5 s for 100 s: never quiet.
        for s in (0..100).step_by(5) {
            t.record(None, "1.2.3.4", "web", 1000 + s);
            let due = t.take_due(1000 + s);
            if s == 60 {
                assert_eq!(due.bursts.len(), 1, "cut at 60 s");
                assert_eq!(due.bursts[0].count, 12);
                assert_eq!(
                    (due.bursts[0].first_at, due.bursts[0].last_at),
                    (1000, 1055)
                );
            } else {
                assert!(due.bursts.is_empty(), "at {s}");
            }
        }
        let rest = t.take_due(2000).bursts;
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].count, rest[0].first_at), (8, 1060));
    }

    #[test]
    fn accounts_and_addresses_are_separate_bursts_and_unknown_names_share_one() {
        let t = ThrottledLogins::default();
        t.record(alice(), "1.1.1.1", "web", 10);
        t.record(alice(), "2.2.2.2", "web", 10);
        t.record(None, "1.1.1.1", "web", 10);
        t.record(None, "1.1.1.1", "web", 11);
        let mut due = t.take_due(100).bursts;
        due.sort_by_key(|b| (b.address.clone(), b.person.clone()));
        let counts: Vec<_> = due
            .iter()
            .map(|b| (b.address.as_str(), b.person.is_some(), b.count))
            .collect();
        assert_eq!(
            counts,
            [
                ("1.1.1.1", false, 2),
                ("1.1.1.1", true, 1),
                ("2.2.2.2", true, 1)
            ]
        );
    }

    #[test]
    fn memory_is_bounded_and_nothing_is_lost_silently() {
        let t = ThrottledLogins::with_capacity(10);
        for i in 0..(CLOSED_CAPACITY + 20) {
            t.record(None, &format!("10.0.{}.{}", i / 256, i % 256), "web", 5);
        }
        let due = t.take_due(5);
        // Closed early to make room: all but the 10 still open, up to the cap.
        assert_eq!(due.bursts.len(), CLOSED_CAPACITY);
        assert_eq!(due.dropped, 10);
        assert_eq!(t.take_due(i64::MAX).bursts.len(), 10);
    }
}
