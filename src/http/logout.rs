//! `GET`/`POST /logout` (OpenID Connect RP-Initiated Logout 1.0): read the
//! parameters and the browser's cookies, let `interaction::logout` decide,
//! render its reply.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::error::OAuthError;
use crate::http::cookies::BrowserCookies;
use crate::http::form::{parse_form, Form, FormParams};
use crate::http::pages;
use crate::interaction::logout::LogoutRequest;

fn malformed() -> HttpResponse {
    pages::error(
        StatusCode::BAD_REQUEST,
        "Invalid request",
        "The sign-out request is malformed.",
    )
}

pub async fn logout_get(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match parse_form(req.query_string().as_bytes()) {
        Ok(p) => run(&state, &req, p).await,
        Err(_) => malformed(),
    }
}

pub async fn logout_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Result<Form, OAuthError>,
) -> HttpResponse {
    match form {
        Ok(Form(p)) => run(&state, &req, p).await,
        Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE => {
            pages::form_error(&e, pages::server_error())
        }
        Err(_) => malformed(),
    }
}

async fn run(state: &AppState, req: &HttpRequest, p: FormParams) -> HttpResponse {
    let cookies = BrowserCookies::of(req);
    let request = LogoutRequest {
        id_token_hint: p.get("id_token_hint"),
        client_id: p.get("client_id"),
        post_logout_redirect_uri: p.get("post_logout_redirect_uri"),
        state: p.get("state"),
        confirmed_by_post: req.method() == actix_web::http::Method::POST
            && p.get("confirm") == Some("yes"),
        csrf: p.get("csrf"),
    };
    match crate::interaction::logout::logout(state, cookies.browser(), request).await {
        Ok(reply) => pages::reply(&state.settings, &state.settings.issuer, reply),
        Err(e) => pages::failure("logout", &e),
    }
}
