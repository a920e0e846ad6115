//! People signing in: login sessions, the browser binding of pending
//! interactions, password checks and throttling. (The cookies that carry
//! them are `http::cookies`.)

pub mod throttle;
pub mod throttled;

use crate::error::OAuthError;
use crate::secret::{random_token, sha256_b64, verify_secret};
use crate::store::sessions::Session;
use crate::store::users::User;
use crate::store::Store;

/// The session's public identifier, the ID token's `sid` (OIDC
/// Front-Channel Logout 1.0 §3): derived one way from the stored id hash, so
/// it names the session without being a credential for it.
pub fn session_sid(id_hash: &str) -> String {
    use base64::Engine;
    let digest = crate::secret::sha256(format!("sid:{id_hash}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or(&digest))
}

/// The browser's binding value (pending interactions are bound to its
/// hash, so a form cannot be completed from another browser: login CSRF),
/// or a new one to set.
pub fn browser_binding(cookie: Option<&str>) -> (String, bool) {
    match cookie {
        Some(v) if v.len() >= 20 && v.len() <= 64 => (v.to_string(), false),
        _ => (random_token(24), true),
    }
}

/// The signed-in person, if the session cookie names a live session of an
/// active person.
pub struct CurrentSession {
    pub id_hash: String,
    pub session: Session,
    pub user: User,
}

pub async fn current(
    store: &Store,
    now: i64,
    cookie: Option<&str>,
) -> Result<Option<CurrentSession>, OAuthError> {
    let Some(value) = cookie else {
        return Ok(None);
    };
    if value.is_empty() || value.len() > 128 {
        return Ok(None);
    }
    let id_hash = sha256_b64(value.as_bytes());
    let h = id_hash.clone();
    let found = store
        .read(move |conn| {
            let Some(s) = crate::store::sessions::get_session(conn, &h)? else {
                return Ok(None);
            };
            let user = crate::store::users::by_id(conn, &s.user_id)?;
            Ok(user.map(|u| (s, u)))
        })
        .await?;
    Ok(match found {
        Some((session, user)) if session.expires_at > now && user.disabled_at.is_none() => {
            Some(CurrentSession {
                id_hash,
                session,
                user,
            })
        }
        _ => None,
    })
}

/// Why a password login failed (the person sees one generic message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    Throttled(i64),
    BadCredentials,
}

/// Check a username and password. Unknown users are verified against a dummy
/// hash so that both failures take the same time.
pub async fn check_password(
    store: &Store,
    throttle: &throttle::Throttle,
    dummy_password_hash: &str,
    now: i64,
    (username, password, address): (&str, &str, &str),
) -> Result<Result<User, LoginFailure>, OAuthError> {
    // The attempt is counted before the (slow) verification, atomically with
    // the check, so parallel guesses cannot slip past the throttle.
    if let Err(wait) = throttle.reserve(store, username, address, now).await? {
        return Ok(Err(LoginFailure::Throttled(wait)));
    }
    let name = username.to_string();
    let user = store
        .read(move |c| crate::store::users::by_username(c, &name))
        .await?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_password_hash.to_string());
    let pw = password.to_string();
    let ok = actix_web::web::block(move || verify_secret(&pw, &hash))
        .await
        .map_err(OAuthError::server_error)?;
    match user {
        Some(u) if ok && u.disabled_at.is_none() => {
            throttle.settle_success(store, username, address).await?;
            Ok(Ok(u))
        }
        // Already counted by the reservation.
        _ => Ok(Err(LoginFailure::BadCredentials)),
    }
}

/// Write the `login_throttled` events of the bursts that ended by `now` (see
/// `throttled`), in one transaction; returns how many were written. The
/// server calls it from its housekeeping loop, and with `i64::MAX` (every
/// burst) at shutdown. Bursts a failed write did not record are kept for the
/// next call.
pub async fn flush_throttled(
    store: &Store,
    throttled: &throttled::ThrottledLogins,
    now: i64,
) -> Result<usize, crate::store::StoreError> {
    let due = throttled.take_due(now);
    if due.dropped > 0 {
        tracing::warn!(
            attempts = due.dropped,
            "throttled login attempts left out of the audit trail: too many bursts at once"
        );
    }
    if due.bursts.is_empty() {
        return Ok(0);
    }
    let events: Vec<_> = due.bursts.iter().map(|b| b.event()).collect();
    let n = events.len();
    let written = store
        .write(move |c| {
            for e in &events {
                crate::store::audit::insert(c, e)?;
            }
            Ok(())
        })
        .await;
    match written {
        Ok(()) => Ok(n),
        Err(e) => {
            throttled.put_back(due.bursts);
            Err(e)
        }
    }
}
