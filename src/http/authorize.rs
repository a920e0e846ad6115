//! `GET`/`POST /authorize` (RFC 6749 §4.1.1, OIDC Core §3.1.2): read the
//! parameters and the browser's cookies, let `interaction::authorize`
//! decide, render its reply. Requests whose client or redirect URI cannot be
//! trusted get an error page; every other answer is a 303 to the client
//! carrying `iss` (RFC 9207) and `state`, or a login or consent page.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::error::OAuthError;
use crate::http::cookies::BrowserCookies;
use crate::http::form::{parse_form_keeping_repeats, FormKeepingRepeats, FormParams};
use crate::http::pages;

pub async fn authorize_get(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match parse_form_keeping_repeats(req.query_string().as_bytes()) {
        Ok(params) => handle(&state, &req, params).await,
        Err(_) => bad_request_page(),
    }
}

pub async fn authorize_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Result<FormKeepingRepeats, OAuthError>,
) -> HttpResponse {
    match form {
        Ok(FormKeepingRepeats(params)) => handle(&state, &req, params).await,
        Err(e) => pages::form_error(&e, bad_request_page()),
    }
}

fn bad_request_page() -> HttpResponse {
    pages::error(
        StatusCode::BAD_REQUEST,
        "Invalid request",
        "The sign-in request is malformed (a parameter is badly encoded).",
    )
}

async fn handle(state: &AppState, req: &HttpRequest, params: FormParams) -> HttpResponse {
    let cookies = BrowserCookies::of(req);
    match crate::interaction::authorize::start(state, cookies.browser(), &params).await {
        Ok(reply) => pages::reply(&state.settings, &state.settings.issuer, reply),
        Err(e) => pages::failure("authorization", &e),
    }
}
