//! Backchannel authentication requests (OpenID CIBA Core 1.0, poll mode).
//! Every change of state is one conditional statement, so concurrent polls,
//! decisions and redemptions on any instance agree on one outcome.

use super::db::{Db, Row};
use super::{StoreError, StoreResult};
use crate::args;

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Redeemed,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Redeemed => "redeemed",
            Status::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Status::Pending),
            "approved" => Some(Status::Approved),
            "denied" => Some(Status::Denied),
            "redeemed" => Some(Status::Redeemed),
            "expired" => Some(Status::Expired),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackchannelRecord {
    /// SHA-256 of the `auth_req_id` (a bearer secret of the client).
    pub auth_req_id_hash: String,
    /// The random public handle the person's page uses (never the id).
    pub handle: String,
    pub client_id: String,
    /// `None`: the hint named nobody who can be asked.
    pub user_id: Option<String>,
    pub scope: String,
    pub resource: String,
    pub task: Option<String>,
    pub binding_message: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub poll_interval: i64,
    pub last_polled_at: Option<i64>,
    pub status: Status,
    pub decided_at: Option<i64>,
    pub shown_at: Option<i64>,
    /// When the person who decided had signed in (OIDC Core §2 `auth_time`
    /// of the ID token the approval yields).
    pub auth_time: Option<i64>,
}

const COLUMNS: &str = "auth_req_id_hash, handle, client_id, user_id, scope, resource, task, \
     binding_message, created_at, expires_at, poll_interval, last_polled_at, status, decided_at, \
     shown_at, auth_time";

fn from_row(r: &Row) -> StoreResult<BackchannelRecord> {
    let status: String = r.get(12)?;
    Ok(BackchannelRecord {
        auth_req_id_hash: r.get(0)?,
        handle: r.get(1)?,
        client_id: r.get(2)?,
        user_id: r.get(3)?,
        scope: r.get(4)?,
        resource: r.get(5)?,
        task: r.get(6)?,
        binding_message: r.get(7)?,
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
        poll_interval: r.get(10)?,
        last_polled_at: r.get(11)?,
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("backchannel status `{status}`")))?,
        decided_at: r.get(13)?,
        shown_at: r.get(14)?,
        auth_time: r.get(15)?,
    })
}

pub fn insert(conn: &dyn Db, b: &BackchannelRecord) -> StoreResult<()> {
    conn.defer(
        &format!(
            "INSERT INTO backchannel_requests ({COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
        ),
        args![
            &b.auth_req_id_hash,
            &b.handle,
            &b.client_id,
            &b.user_id,
            &b.scope,
            &b.resource,
            &b.task,
            &b.binding_message,
            b.created_at,
            b.expires_at,
            b.poll_interval,
            b.last_polled_at,
            b.status.as_str(),
            b.decided_at,
            b.shown_at,
            b.auth_time
        ],
    )
}

/// The request of this client with this `auth_req_id` hash. Another
/// client's request is not found: it is not that client's to poll.
pub fn get_for_client(
    conn: &dyn Db,
    auth_req_id_hash: &str,
    client_id: &str,
) -> StoreResult<Option<BackchannelRecord>> {
    conn.query_one(
        &format!(
            "SELECT {COLUMNS} FROM backchannel_requests \
             WHERE auth_req_id_hash = ?1 AND client_id = ?2"
        ),
        args![auth_req_id_hash, client_id],
    )?
    .map(|r| from_row(&r))
    .transpose()
}

/// The request behind a handle, whoever it names.
pub fn by_handle(conn: &dyn Db, handle: &str) -> StoreResult<Option<BackchannelRecord>> {
    conn.query_one(
        &format!("SELECT {COLUMNS} FROM backchannel_requests WHERE handle = ?1"),
        args![handle],
    )?
    .map(|r| from_row(&r))
    .transpose()
}

/// CIBA Core §10.1, §11: the one statement that decides which poll redeems
/// an approved, unexpired request. True for the single winner.
pub fn redeem(
    conn: &dyn Db,
    auth_req_id_hash: &str,
    client_id: &str,
    now: i64,
) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE backchannel_requests SET status = 'redeemed', last_polled_at = ?3 \
         WHERE auth_req_id_hash = ?1 AND client_id = ?2 AND status = 'approved' AND expires_at > ?3",
        args![auth_req_id_hash, client_id, now],
    )? == 1)
}

/// A pending or approved request whose time is up becomes expired. True
/// when this call made the change (so it is audited once).
pub fn expire(
    conn: &dyn Db,
    auth_req_id_hash: &str,
    client_id: &str,
    now: i64,
) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE backchannel_requests SET status = 'expired' \
         WHERE auth_req_id_hash = ?1 AND client_id = ?2 AND status IN ('pending', 'approved') \
         AND expires_at <= ?3",
        args![auth_req_id_hash, client_id, now],
    )? == 1)
}

/// How a poll of a pending request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// At least the interval after the previous poll (or the first poll).
    InTime,
    /// Too soon: the interval is now 5 s longer (CIBA Core §11 `slow_down`).
    TooSoon,
    /// The request is no longer pending (or unknown).
    NotPending,
}

/// Record a poll of a pending request. The first statement records it
/// only if it came at least `poll_interval` after the previous one; if it
/// did not, the second raises the interval by 5 s (RFC 8628 §3.5, which
/// CIBA Core §11 follows) and records it. No value is read first.
pub fn record_poll(
    conn: &dyn Db,
    auth_req_id_hash: &str,
    client_id: &str,
    now: i64,
) -> StoreResult<Poll> {
    let in_time = conn.execute(
        "UPDATE backchannel_requests SET last_polled_at = ?3 \
         WHERE auth_req_id_hash = ?1 AND client_id = ?2 AND status = 'pending' \
         AND (last_polled_at IS NULL OR last_polled_at + poll_interval <= ?3)",
        args![auth_req_id_hash, client_id, now],
    )?;
    if in_time == 1 {
        return Ok(Poll::InTime);
    }
    let too_soon = conn.execute(
        "UPDATE backchannel_requests SET last_polled_at = ?3, poll_interval = poll_interval + 5 \
         WHERE auth_req_id_hash = ?1 AND client_id = ?2 AND status = 'pending'",
        args![auth_req_id_hash, client_id, now],
    )?;
    Ok(if too_soon == 1 {
        Poll::TooSoon
    } else {
        Poll::NotPending
    })
}

/// The person's decision on a request naming them, while it is pending and
/// unexpired. True when it was taken (one statement: a second decision, a
/// decision by anyone else or after expiry changes nothing).
pub fn decide(
    conn: &dyn Db,
    handle: &str,
    user_id: &str,
    to: Status,
    now: i64,
    auth_time: i64,
) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE backchannel_requests SET status = ?3, decided_at = ?4, auth_time = ?5 \
         WHERE handle = ?1 AND user_id = ?2 AND status = 'pending' AND expires_at > ?4",
        args![handle, user_id, to.as_str(), now, auth_time],
    )? == 1)
}

/// A pending request as the person's page lists it, with its client's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    pub record: BackchannelRecord,
    pub client_name: String,
    pub client_kind: String,
}

/// The person's pending, unexpired requests from clients still registered
/// and not blocked, oldest first.
pub fn pending_for(conn: &dyn Db, user_id: &str, now: i64) -> StoreResult<Vec<PendingRow>> {
    let cols: Vec<String> = COLUMNS
        .split(", ")
        .map(|c| format!("b.{}", c.trim()))
        .collect();
    conn.query(
        &format!(
            "SELECT {}, c.name, c.kind FROM backchannel_requests b \
             JOIN clients c ON c.id = b.client_id AND c.blocked_at IS NULL \
             WHERE b.user_id = ?1 AND b.status = 'pending' AND b.expires_at > ?2 \
             ORDER BY b.created_at, b.handle",
            cols.join(", ")
        ),
        args![user_id, now],
    )?
    .iter()
    .map(|r| {
        Ok(PendingRow {
            record: from_row(r)?,
            client_name: r.get(16)?,
            client_kind: r.get(17)?,
        })
    })
    .collect()
}

/// The page showed this request to its person: true the first time.
pub fn mark_shown(conn: &dyn Db, handle: &str, user_id: &str, now: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE backchannel_requests SET shown_at = ?3 \
         WHERE handle = ?1 AND user_id = ?2 AND shown_at IS NULL",
        args![handle, user_id, now],
    )? == 1)
}

/// A removed client's requests that could still be approved or redeemed
/// end as expired; how many.
pub fn end_for_client(conn: &dyn Db, client_id: &str, now: i64) -> StoreResult<usize> {
    conn.execute(
        "UPDATE backchannel_requests SET status = 'expired' \
         WHERE client_id = ?1 AND expires_at > ?2 AND status IN ('pending', 'approved')",
        args![client_id, now],
    )
}

/// A person's requests that could still be approved or redeemed, ended as
/// denied (the person withdrew, or an operator did for them): polls answer
/// `access_denied`, nothing is redeemed. All of the person's, or one
/// client's, or one client's for one task; how many.
pub fn withdraw_for(
    conn: &dyn Db,
    user_id: &str,
    client_id: Option<&str>,
    task: Option<&str>,
    now: i64,
) -> StoreResult<usize> {
    // A request already past its expiry stays expired (its poll answers
    // expired_token, CIBA Core §11) and is not counted as withdrawn.
    const OPEN: &str = "UPDATE backchannel_requests SET status = 'denied' \
         WHERE user_id = ?1 AND expires_at > ?2 AND status IN ('pending', 'approved')";
    match (client_id, task) {
        (None, _) => conn.execute(OPEN, args![user_id, now]),
        (Some(c), None) => conn.execute(
            &format!("{OPEN} AND client_id = ?3"),
            args![user_id, now, c],
        ),
        (Some(c), Some(t)) => conn.execute(
            &format!("{OPEN} AND client_id = ?3 AND task = ?4"),
            args![user_id, now, c, t],
        ),
    }
}
