//! HTML pages (askama templates in `templates/`) and the headers every HTML
//! response carries: no framing, no referrer, no caching, no scripts.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub client_name: &'a str,
    pub interaction: &'a str,
    pub csrf: &'a str,
    pub login_hint: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub client_name: &'a str,
    pub username: &'a str,
    pub is_agent: bool,
    /// The API the access will be for, when it is not deputy itself.
    pub resource: Option<&'a str>,
    /// (scope, plain words)
    pub scopes: Vec<(String, String)>,
    pub interaction: &'a str,
    pub csrf: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub csrf: &'a str,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub state: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'";

/// Security headers for every HTML response.
pub fn with_html_headers(mut b: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    b.insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"));
    b
}

/// Render a template into a response builder that may still get cookies.
pub fn render(
    status: StatusCode,
    page: &impl Template,
) -> (actix_web::HttpResponseBuilder, String) {
    let body = page.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "template failed to render");
        "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_string()
    });
    let mut b = with_html_headers(HttpResponse::build(status));
    b.content_type("text/html; charset=utf-8");
    (b, body)
}

pub fn page(status: StatusCode, page: &impl Template) -> HttpResponse {
    let (mut b, body) = render(status, page);
    b.body(body)
}

pub fn error(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    page(status, &ErrorPage { title, message })
}

/// The page for a form that could not be read: 413 for an oversized body
/// (the same limit as every form endpoint), otherwise `fallback`.
pub fn form_error(e: &crate::error::OAuthError, fallback: HttpResponse) -> HttpResponse {
    if e.status == StatusCode::PAYLOAD_TOO_LARGE {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request too large",
            "The form is too large.",
        );
    }
    // A body that is a form but not a readable one (invalid UTF-8, too many
    // or repeated fields): 400, like every other endpoint. A body that is
    // not a form at all (wrong content type) keeps the caller's answer.
    if e.status == StatusCode::REQUEST_TIMEOUT {
        return error(
            StatusCode::REQUEST_TIMEOUT,
            "Request timeout",
            "The form did not arrive in time.",
        );
    }
    if e.status == StatusCode::BAD_REQUEST && e.description != crate::http::form::NOT_A_FORM {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The form could not be read.",
        );
    }
    fallback
}

/// 429 for a browser over a per-address limit, with `Retry-After`.
pub fn too_many_requests() -> HttpResponse {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
        "Too many sign-in requests from your address. Wait a moment and try again.",
    );
    r.headers_mut().insert(
        actix_web::http::header::RETRY_AFTER,
        actix_web::http::header::HeaderValue::from_static("1"),
    );
    r
}
