//! Failed logins per account, in the database so every instance sees the
//! same count: an attacker cannot multiply the free attempts by the number
//! of instances. The account is a key the caller derives from the name
//! (`login::throttle`), never the name itself. The waiting policy is the
//! caller's; this module only keeps the count.

use super::db::Db;
use super::StoreResult;
use crate::args;

/// How the count turns into a wait (given by `login::throttle`).
pub struct Policy<'a> {
    /// A quiet period after which old failures are forgotten.
    pub forget_after: i64,
    /// Seconds to wait after this many failures.
    pub wait_for: &'a dyn Fn(u32) -> i64,
}

/// Check and count one attempt for `account` inside the caller's
/// transaction (SERIALIZABLE on PostgreSQL, the one writer on SQLite, so two
/// instances cannot both read the old count). `Err(wait)` when the account
/// must still wait; then nothing is counted.
pub fn reserve(
    conn: &dyn Db,
    account: &str,
    now: i64,
    policy: &Policy<'_>,
) -> StoreResult<Result<(), i64>> {
    let row = conn.query_one(
        "SELECT failures, last_failure, locked_until FROM login_failures WHERE account = ?1",
        args![account],
    )?;
    let (failures, last_failure, locked_until) = match row {
        Some(r) => (r.get::<i64>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?),
        None => (0, 0, 0),
    };
    if locked_until > now {
        return Ok(Err(locked_until - now));
    }
    let failures = if now - last_failure > policy.forget_after {
        1
    } else {
        u32::try_from(failures)
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    };
    let locked_until = now + (policy.wait_for)(failures);
    conn.execute(
        "INSERT INTO login_failures (account, failures, last_failure, locked_until) \
         VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (account) DO UPDATE SET failures = excluded.failures, \
         last_failure = excluded.last_failure, locked_until = excluded.locked_until",
        args![account, failures, now, locked_until],
    )?;
    Ok(Ok(()))
}

/// The person signed in: the account starts again from zero.
pub fn clear(conn: &dyn Db, account: &str) -> StoreResult<()> {
    conn.execute(
        "DELETE FROM login_failures WHERE account = ?1",
        args![account],
    )?;
    Ok(())
}

/// Forget accounts that are not waiting and have been quiet since `before`.
pub fn purge(conn: &dyn Db, now: i64, before: i64) -> StoreResult<usize> {
    conn.execute(
        "DELETE FROM login_failures WHERE last_failure < ?1 AND locked_until <= ?2",
        args![before, now],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteDb;
    use rusqlite::Connection;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrate::migrate(&mut c).unwrap();
        c
    }

    fn wait(n: u32) -> i64 {
        if n < 3 {
            0
        } else {
            10 * i64::from(n - 2)
        }
    }

    const POLICY: Policy<'static> = Policy {
        forget_after: 100,
        wait_for: &wait,
    };

    #[test]
    fn counts_until_a_wait_then_refuses_without_counting() {
        let conn = db();
        let c = SqliteDb(&conn);
        assert_eq!(reserve(&c, "a", 1000, &POLICY).unwrap(), Ok(()));
        assert_eq!(reserve(&c, "a", 1000, &POLICY).unwrap(), Ok(()));
        // The third failure earns a 10 s wait; attempts meanwhile are refused
        // and not counted (the wait does not grow while refused).
        assert_eq!(reserve(&c, "a", 1000, &POLICY).unwrap(), Ok(()));
        assert_eq!(reserve(&c, "a", 1001, &POLICY).unwrap(), Err(9));
        assert_eq!(reserve(&c, "a", 1009, &POLICY).unwrap(), Err(1));
        assert_eq!(reserve(&c, "a", 1010, &POLICY).unwrap(), Ok(()));
        assert_eq!(reserve(&c, "a", 1010, &POLICY).unwrap(), Err(20));
        // Other accounts are untouched.
        assert_eq!(reserve(&c, "b", 1010, &POLICY).unwrap(), Ok(()));
        // Success clears; a long quiet period forgets.
        clear(&c, "a").unwrap();
        assert_eq!(reserve(&c, "a", 1030, &POLICY).unwrap(), Ok(()));
        assert_eq!(reserve(&c, "b", 1200, &POLICY).unwrap(), Ok(()));
        assert_eq!(reserve(&c, "b", 1200, &POLICY).unwrap(), Ok(()));
    }

    #[test]
    fn purge_forgets_only_quiet_accounts_that_are_not_waiting() {
        let conn = db();
        let c = SqliteDb(&conn);
        for _ in 0..3 {
            reserve(&c, "waiting", 1000, &POLICY).unwrap().unwrap();
        }
        reserve(&c, "quiet", 1000, &POLICY).unwrap().unwrap();
        reserve(&c, "recent", 1005, &POLICY).unwrap().unwrap();
        assert_eq!(purge(&c, 1005, 1001).unwrap(), 1);
        assert_eq!(reserve(&c, "waiting", 1005, &POLICY).unwrap(), Err(5));
        assert_eq!(reserve(&c, "recent", 1005, &POLICY).unwrap(), Ok(()));
    }
}
