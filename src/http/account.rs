//! `GET /account`, `POST /account/withdraw`, `POST /account/signout-everywhere`:
//! the signed-in person's own page (what their apps and agents hold, their
//! recent activity) and what they can stop. Read the request, check the
//! login session, the same-origin headers and the session-bound CSRF token,
//! call `account`, render. Every answer carries the HTML security headers.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

mod notices;
use notices::{client_notice, requests_withdrawn, task_notice, tokens};

use crate::account::withdraw::{self, SignedOut};
use crate::account::{Activity, Delegation, Holdings};
use crate::admin::Origin;
use crate::app::AppState;
use crate::error::OAuthError;
use crate::http::cookies::BrowserCookies;
use crate::http::form::Form;
use crate::http::pages;
use crate::login::CurrentSession;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    username: &'a str,
    csrf: &'a str,
    /// Backchannel (CIBA) requests waiting for the person's decision.
    requests: &'a [crate::ciba::PendingApproval],
    holdings: &'a Holdings,
    activity: &'a Activity,
    /// The activity cursor this page was opened with (an older page).
    before: Option<i64>,
    /// What the form just posted changed.
    notice: Option<&'a str>,
    issuer: &'a str,
}

impl AccountPage<'_> {
    /// A time as the person reads it: the date and minute, UTC.
    fn when(&self, t: &i64) -> String {
        when(*t)
    }

    /// An `act` chain from the person to the current actor.
    fn chain(&self, d: &Delegation) -> String {
        chain_text(&d.chain)
    }

    fn actors(&self, chain: &[String]) -> String {
        chain_text(chain)
    }

    /// A resource (RFC 8707) in words: deputy itself is the person's
    /// sign-in, anything else is named by its URI.
    fn resource<'r>(&self, r: &'r str) -> &'r str {
        if r == self.issuer {
            "your sign-in (deputy)"
        } else {
            r
        }
    }
}

/// `2030-03-17 12:34 UTC`.
fn when(t: i64) -> String {
    match actix_web::cookie::time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute()
        ),
        Err(_) => t.to_string(),
    }
}

/// "you → agent-x → agent-y": the first actor the person's access went to,
/// then each next one (the stored chain has the current actor first).
fn chain_text(chain: &[String]) -> String {
    let mut parts = vec!["you"];
    parts.extend(chain.iter().rev().map(String::as_str));
    parts.join(" \u{2192} ")
}

fn refused(status: StatusCode, message: &str) -> HttpResponse {
    pages::error(status, "Request refused", message)
}

fn forbidden() -> HttpResponse {
    refused(
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from your account page. Open your account page and try again.",
    )
}

fn failed(what: &str, e: impl Into<crate::error::OAuthError>) -> HttpResponse {
    pages::failure(what, &e.into())
}

/// The key the CSRF tokens are derived with, loaded (or created) once.
async fn csrf_key(state: &AppState) -> Result<String, OAuthError> {
    if let Some(k) = state.account_csrf_key.get() {
        return Ok(k.clone());
    }
    let k = state
        .store
        .write(|c| crate::store::refresh::server_secret(c, "account-csrf"))
        .await?;
    Ok(state.account_csrf_key.get_or_init(|| k).clone())
}

/// Fetch Metadata (W3C `Sec-Fetch-Site`) and the Fetch standard's `Origin`:
/// a form posted from another site is refused even with a valid token.
/// `Origin: null` is what browsers send for a form on a `no-referrer` page
/// (ours), so it tells nothing; absent headers (older browsers, non-browser
/// clients) leave the CSRF token to decide.
fn same_origin(req: &HttpRequest, issuer: &str) -> bool {
    let ours = url::Url::parse(issuer)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("\u{0}"))
    };
    let origin_ok = header("origin").is_none_or(|o| o == ours || o == "null");
    let site_ok = header("sec-fetch-site").is_none_or(|s| s == "same-origin");
    origin_ok && site_ok
}

pub(crate) async fn render_page(
    state: &AppState,
    s: &CurrentSession,
    before: Option<i64>,
    notice: Option<&str>,
) -> HttpResponse {
    let csrf = match csrf_key(state)
        .await
        .and_then(|k| crate::account::csrf_token(&k, &s.id_hash).map_err(OAuthError::server_error))
    {
        Ok(c) => c,
        Err(e) => return failed("account page", e),
    };
    let (person, now) = (s.user.id.clone(), state.clock.now());
    let read = {
        let person = person.clone();
        state
            .store
            .read(move |c| {
                Ok((
                    crate::ciba::pending_for(c, &person, now)?,
                    crate::account::holdings(c, &person, now)?,
                    crate::account::activity(c, &person, before)?,
                ))
            })
            .await
    };
    let (requests, holdings, activity) = match read {
        Ok(v) => v,
        Err(e) => return failed("account page", e),
    };
    // CIBA: the first showing of a request is audited (`ciba_shown`).
    if requests.iter().any(|r| r.first_shown) {
        let shown = requests.clone();
        if let Err(e) = state
            .store
            .write(move |c| crate::ciba::mark_shown(c, &person, &shown, now))
            .await
        {
            return failed("account page", e);
        }
    }
    pages::page(
        StatusCode::OK,
        &AccountPage {
            username: &s.user.username,
            csrf: &csrf,
            requests: &requests,
            holdings: &holdings,
            activity: &activity,
            before,
            notice,
            issuer: &state.settings.issuer,
        },
    )
}

/// `GET /account[?before=N]`. Without a login session: a sign-in that comes
/// back here (a 303 to the login form).
pub async fn page(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let cookies = BrowserCookies::of(&req);
    let browser = cookies.browser();
    let current =
        match crate::login::current(&state.store, state.clock.now(), browser.session).await {
            Ok(c) => c,
            Err(e) => return failed("account page", e),
        };
    let Some(session) = current else {
        return match crate::interaction::account::start(&state, browser).await {
            Ok(reply) => pages::reply(&state.settings, &state.settings.issuer, reply),
            Err(e) => failed("account sign-in", e),
        };
    };
    let Ok(params) = crate::http::form::parse_form(req.query_string().as_bytes()) else {
        return refused(StatusCode::BAD_REQUEST, "The page address is malformed.");
    };
    let before = match params.get("before").map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "The activity page asked for does not exist.",
            )
        }
    };
    render_page(&state, &session, before, None).await
}

/// The checks every account form passes before anything changes: a form,
/// from this origin, of a live login session, with that session's CSRF token.
pub(crate) async fn checked_form(
    state: &AppState,
    req: &HttpRequest,
    form: Result<Form, OAuthError>,
) -> Result<(CurrentSession, crate::http::form::FormParams), HttpResponse> {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return Err(pages::form_error(&e, forbidden())),
    };
    if !same_origin(req, &state.settings.issuer) {
        return Err(forbidden());
    }
    let cookies = BrowserCookies::of(req);
    let session =
        match crate::login::current(&state.store, state.clock.now(), cookies.browser().session)
            .await
        {
            Ok(Some(s)) => s,
            Ok(None) => return Err(forbidden()),
            Err(e) => return Err(failed("account form", e)),
        };
    let key = match csrf_key(state).await {
        Ok(k) => k,
        Err(e) => return Err(failed("account form", e)),
    };
    if !crate::account::csrf_matches(&key, &session.id_hash, form.get("csrf")) {
        return Err(forbidden());
    }
    Ok((session, form))
}

fn person_origin(s: &CurrentSession) -> Origin {
    Origin::Person {
        sid: crate::login::session_sid(&s.id_hash),
    }
}

/// `POST /account/withdraw`: `client_id`, optionally `task`.
pub async fn withdraw(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Result<Form, OAuthError>,
) -> HttpResponse {
    let (session, form) = match checked_form(&state, &req, form).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let client_id = match form.get("client_id") {
        Some(c) if !c.is_empty() && c.len() <= 512 => c.to_string(),
        _ => return refused(StatusCode::BAD_REQUEST, "Choose what to withdraw."),
    };
    let task = match form.get("task") {
        None => None,
        Some(t) if crate::policy::delegation::is_valid_task(t) => Some(t.to_string()),
        Some(_) => return refused(StatusCode::BAD_REQUEST, "That task name is not valid."),
    };
    let (person, origin, now) = (
        session.user.id.clone(),
        person_origin(&session),
        state.clock.now(),
    );
    let (cid, t) = (client_id.clone(), task.clone());
    let done = state
        .store
        .write(move |c| match &t {
            Some(task) => withdraw::task(c, &person, &cid, task, &origin, now).map(Err),
            None => withdraw::client(c, &person, &cid, &origin, now).map(Ok),
        })
        .await;
    let notice = match done {
        Ok(Ok(w)) => client_notice(&client_id, &w),
        Ok(Err(n)) => task_notice(&client_id, task.as_deref().unwrap_or_default(), &n),
        Err(e) => return failed("withdrawal", e),
    };
    render_page(&state, &session, None, Some(&notice)).await
}

/// `POST /account/signout-everywhere`: every session and refresh family of
/// the person ends; the answer says so and clears this browser's cookie.
pub async fn sign_out_everywhere(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Result<Form, OAuthError>,
) -> HttpResponse {
    let (session, _) = match checked_form(&state, &req, form).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let (person, origin, now) = (
        session.user.id.clone(),
        person_origin(&session),
        state.clock.now(),
    );
    let out: SignedOut = match state
        .store
        .write(move |c| withdraw::everywhere(c, &person, &origin, now))
        .await
    {
        Ok(o) => o,
        Err(e) => return failed("sign out everywhere", e),
    };
    let message = format!(
        "You are signed out of deputy everywhere: {} ended, {} revoked{}. Apps and agents you allowed must ask you to sign in again.",
        match out.sessions {
            1 => "1 session".to_string(),
            n => format!("{n} sessions"),
        },
        tokens(out.revoked),
        requests_withdrawn(out.requests)
    );
    let mut resp = pages::page(
        StatusCode::OK,
        &pages::MessagePage {
            title: "Signed out everywhere",
            message: &message,
        },
    );
    let _ = resp.add_cookie(&crate::http::cookies::clear_session_cookie(&state.settings));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_minutes() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_900_000_000), "2030-03-17 17:46 UTC");
    }

    #[test]
    fn chains_start_with_the_person() {
        assert_eq!(
            chain_text(&["agent-y".to_string(), "agent-x".to_string()]),
            "you \u{2192} agent-x \u{2192} agent-y"
        );
        assert_eq!(chain_text(&[]), "you");
    }
}
