//! The cookies of a person's sign-in, and where a request came from.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::HttpRequest;

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

/// Client address for limits and throttling: the peer, never a forwarded header.
pub fn address(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

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
