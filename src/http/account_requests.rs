//! The person's answer to backchannel authentication requests (OpenID CIBA
//! Core 1.0, poll mode). The requests are listed at the top of `/account`;
//! `POST /account/requests/{handle}` approves or denies one, with the same
//! checks as every account form (login session, same origin, the
//! session-bound CSRF token), and answers with the account page.
//! `GET /account/requests` (where older notices link) goes to `/account`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::ciba::{self, Decision};
use crate::error::OAuthError;
use crate::http::account::{checked_form, render_page};
use crate::http::form::Form;
use crate::http::pages;
use crate::store::Outcome;

pub async fn list() -> HttpResponse {
    pages::with_html_headers(HttpResponse::SeeOther())
        .insert_header((header::LOCATION, "/account"))
        .finish()
}

pub async fn decide(
    state: web::Data<AppState>,
    req: HttpRequest,
    handle: web::Path<String>,
    form: Result<Form, OAuthError>,
) -> HttpResponse {
    let (session, form) = match checked_form(&state, &req, form).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let Some(decision) = form.get("decision").and_then(Decision::parse) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Cannot continue",
            "Choose Approve or Deny.",
        );
    };
    let now = state.clock.now();
    let user_id = session.user.id.clone();
    // The ID token an approval yields says when the person signed in.
    let auth_time = session.session.auth_time;
    let handle = handle.into_inner();
    let decided = state
        .store
        .transact(move |c| {
            Ok(
                match ciba::decide(c, &user_id, &handle, decision, now, auth_time)? {
                    Ok(d) => Outcome::Commit(d),
                    Err(e) => Outcome::Rollback(e),
                },
            )
        })
        .await;
    let notice = match decided {
        Ok(Ok(Decision::Approve)) => {
            "Approved: the application can now obtain access for this one request."
        }
        Ok(Ok(Decision::Deny)) => "Denied: the application has been told no.",
        Ok(Err(ciba::NotDecidable)) => return pages::error(
            StatusCode::NOT_FOUND,
            "Nothing to decide",
            "No such request is waiting for you: it expired, was decided already, or is not yours.",
        ),
        Err(e) => return pages::failure("account decision", &e.into()),
    };
    render_page(&state, &session, None, Some(notice)).await
}
