//! People signing in: session cookies, the browser binding of pending
//! interactions, password checks and throttling.

pub mod throttle;
pub mod throttled;

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::HttpRequest;

use crate::app::AppState;
use crate::config::Settings;
use crate::error::OAuthError;
use crate::secret::{random_token, sha256_b64, verify_secret};
use crate::store::sessions::Session;
use crate::store::users::User;

pub const SESSION_COOKIE: &str = "deputy_session";
/// A random per-browser value; pending interactions are bound to its hash so a
/// form cannot be completed from another browser (login CSRF).
pub const BROWSER_COOKIE: &str = "deputy_browser";

fn cookie(settings: &Settings, name: &'static str, value: String, max_age: i64) -> Cookie<'static> {
    Cookie::build(name, value)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(settings.issuer_is_https())
        .path("/")
        .max_age(CookieDuration::seconds(max_age))
        .finish()
}

/// The session's public identifier, the ID token's `sid` (OIDC
/// Front-Channel Logout 1.0 §3): derived one way from the stored id hash, so
/// it names the session without being a credential for it.
pub fn session_sid(id_hash: &str) -> String {
    use base64::Engine;
    let digest = crate::secret::sha256(format!("sid:{id_hash}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or(&digest))
}

pub fn session_cookie(settings: &Settings, value: String) -> Cookie<'static> {
    cookie(settings, SESSION_COOKIE, value, settings.session_ttl)
}

pub fn clear_session_cookie(settings: &Settings) -> Cookie<'static> {
    cookie(settings, SESSION_COOKIE, String::new(), 0)
}

pub fn browser_cookie(settings: &Settings, value: String) -> Cookie<'static> {
    cookie(settings, BROWSER_COOKIE, value, 365 * 24 * 3600)
}

/// The browser's binding value, or a new one to set.
pub fn browser_id(req: &HttpRequest) -> (String, bool) {
    match req.cookie(BROWSER_COOKIE) {
        Some(c) if c.value().len() >= 20 && c.value().len() <= 64 => (c.value().to_string(), false),
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
    state: &AppState,
    req: &HttpRequest,
) -> Result<Option<CurrentSession>, OAuthError> {
    let Some(c) = req.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    if c.value().is_empty() || c.value().len() > 128 {
        return Ok(None);
    }
    let id_hash = sha256_b64(c.value().as_bytes());
    let now = state.clock.now();
    let h = id_hash.clone();
    let found = state
        .store
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
    state: &AppState,
    username: &str,
    password: &str,
    address: &str,
) -> Result<Result<User, LoginFailure>, OAuthError> {
    let now = state.clock.now();
    // The attempt is counted before the (slow) verification, atomically with
    // the check, so parallel guesses cannot slip past the throttle.
    if let Err(wait) = state.throttle.reserve(username, address, now) {
        return Ok(Err(LoginFailure::Throttled(wait)));
    }
    let name = username.to_string();
    let user = state
        .store
        .read(move |c| crate::store::users::by_username(c, &name))
        .await?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hashes.password.clone());
    let pw = password.to_string();
    let ok = actix_web::web::block(move || verify_secret(&pw, &hash))
        .await
        .map_err(OAuthError::server_error)?;
    match user {
        Some(u) if ok && u.disabled_at.is_none() => {
            state.throttle.settle_success(username, address, now);
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
    state: &AppState,
    now: i64,
) -> Result<usize, crate::store::StoreError> {
    let due = state.throttled_logins.take_due(now);
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
    let written = state
        .store
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
            state.throttled_logins.put_back(due.bursts);
            Err(e)
        }
    }
}

/// Client address for throttling: the peer, never a forwarded header.
pub fn address(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}
