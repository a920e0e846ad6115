//! The person's answer to backchannel authentication requests (OpenID CIBA
//! Core 1.0, poll mode): `GET /account/requests` lists what waits for the
//! signed-in person, `POST /account/requests/{handle}` approves or denies
//! one. Both need the login session cookie; the POST also needs the page's
//! CSRF token, derived from the session (so any instance can check it).
//! Interim home until the account page (`/account`) shows them at its top.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use crate::app::AppState;
use crate::ciba::{self, Decision, PendingApproval};
use crate::error::OAuthError;
use crate::http::cookies::SESSION_COOKIE;
use crate::http::form::Form;
use crate::http::pages;
use crate::login::CurrentSession;
use crate::store::Outcome;

#[derive(Template)]
#[template(path = "account_requests.html")]
struct RequestsPage<'a> {
    username: &'a str,
    csrf: &'a str,
    requests: Vec<PendingApproval>,
}

/// The CSRF token of a session's forms: a one-way function of the stored
/// session id hash, itself a hash of the cookie, so only the cookie's
/// holder can know it and every instance derives the same.
pub fn csrf_token(session_id_hash: &str) -> String {
    crate::secret::sha256_b64(format!("account-csrf:{session_id_hash}").as_bytes())
}

async fn signed_in(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Option<CurrentSession>, OAuthError> {
    let cookie = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string());
    crate::login::current(&state.store, state.clock.now(), cookie.as_deref()).await
}

fn not_signed_in() -> HttpResponse {
    pages::error(
        StatusCode::UNAUTHORIZED,
        "Sign in first",
        "Sign in to deputy to see what waits for you.",
    )
}

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let session = match signed_in(&state, &req).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_signed_in(),
        Err(e) => {
            tracing::error!(error = %e, "account requests failed");
            return pages::server_error();
        }
    };
    let now = state.clock.now();
    let user_id = session.user.id.clone();
    // Listing records the first showing of each request (`ciba_shown`).
    let shown = state
        .store
        .write(move |c| {
            let pending = ciba::pending_for(c, &user_id, now)?;
            ciba::mark_shown(c, &user_id, &pending, now)?;
            Ok(pending)
        })
        .await;
    match shown {
        Ok(requests) => pages::page(
            StatusCode::OK,
            &RequestsPage {
                username: &session.user.username,
                csrf: &csrf_token(&session.id_hash),
                requests,
            },
        ),
        Err(e) => {
            tracing::error!(error = %e, "account requests failed");
            pages::server_error()
        }
    }
}

pub async fn decide(
    state: web::Data<AppState>,
    req: HttpRequest,
    handle: web::Path<String>,
    form: Result<Form, OAuthError>,
) -> HttpResponse {
    let forbidden = || pages::error(StatusCode::FORBIDDEN, "Forbidden", "The form has expired.");
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return pages::form_error(&e, forbidden()),
    };
    let session = match signed_in(&state, &req).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_signed_in(),
        Err(e) => {
            tracing::error!(error = %e, "account decision failed");
            return pages::server_error();
        }
    };
    let expected = csrf_token(&session.id_hash);
    let sent = form.get("csrf").unwrap_or("");
    if !crate::secret::constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        return forbidden();
    }
    let Some(decision) = form.get("decision").and_then(Decision::parse) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Cannot continue",
            "Choose Approve or Deny.",
        );
    };
    let now = state.clock.now();
    let user_id = session.user.id.clone();
    let handle = handle.into_inner();
    let decided = state
        .store
        .transact(move |c| {
            Ok(match ciba::decide(c, &user_id, &handle, decision, now)? {
                Ok(d) => Outcome::Commit(d),
                Err(e) => Outcome::Rollback(e),
            })
        })
        .await;
    let message = |title: &str, message: &str| {
        pages::page(StatusCode::OK, &pages::MessagePage { title, message })
    };
    match decided {
        Ok(Ok(Decision::Approve)) => message(
            "Approved",
            "The application can now obtain access for this one request.",
        ),
        Ok(Ok(Decision::Deny)) => message("Denied", "The application has been told no."),
        Ok(Err(ciba::NotDecidable)) => pages::error(
            StatusCode::NOT_FOUND,
            "Nothing to decide",
            "No such request is waiting for you: it expired, was decided already, or is not yours.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "account decision failed");
            pages::server_error()
        }
    }
}
