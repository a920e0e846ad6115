//! The cookies of a person's sign-in, and where a request came from.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::header::HeaderName;
use actix_web::{web, HttpRequest};

use crate::app::AppState;
use crate::config::Settings;
use crate::interaction::Browser;

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

pub fn session_cookie(settings: &Settings, value: String) -> Cookie<'static> {
    cookie(settings, SESSION_COOKIE, value, settings.session_ttl)
}

pub fn clear_session_cookie(settings: &Settings) -> Cookie<'static> {
    cookie(settings, SESSION_COOKIE, String::new(), 0)
}

pub fn browser_cookie(settings: &Settings, value: String) -> Cookie<'static> {
    cookie(settings, BROWSER_COOKIE, value, 365 * 24 * 3600)
}

/// The client's address, for the per-address limits, the login throttle,
/// the failure budget and the audit trail: the peer, unless the peer is one
/// of `trusted_proxies`; then the right-most `X-Forwarded-For` entry that is
/// not (`crate::proxies`).
pub fn address(req: &HttpRequest) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return "unknown".to_string();
    };
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|state| &state.settings.trusted_proxies)
        .filter(|t| t.trusts(peer));
    match trusted {
        // A trusted proxy: read what it forwarded.
        Some(trusted) => {
            let forwarded: Vec<Option<&str>> = req
                .headers()
                .get_all(X_FORWARDED_FOR)
                .map(|v| v.to_str().ok())
                .collect();
            trusted.client(peer, forwarded).to_string()
        }
        None => peer.to_string(),
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The request's cookie values, owned (the `Browser` borrows from them).
pub struct BrowserCookies {
    session: Option<String>,
    binding: Option<String>,
    address: String,
}

impl BrowserCookies {
    pub fn of(req: &HttpRequest) -> Self {
        BrowserCookies {
            session: req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()),
            binding: req.cookie(BROWSER_COOKIE).map(|c| c.value().to_string()),
            address: address(req),
        }
    }

    pub fn browser(&self) -> Browser<'_> {
        Browser {
            session: self.session.as_deref(),
            binding: self.binding.as_deref(),
            address: &self.address,
        }
    }
}
