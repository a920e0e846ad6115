//! HTML pages (askama templates in `templates/`) and the headers every HTML
//! response carries: no framing, no referrer, no caching, no scripts (but the form_post page's
//! one, allowed by its hash).

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::grant::authorization_code::request::ResponseMode;

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
    pub self_described: Option<&'a crate::interaction::SelfDescribed>,
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

/// Form Post Response Mode §2: the answer as hidden fields of a form that
/// submits itself to the redirect URI.
#[derive(Template)]
#[template(path = "form_post.html")]
pub struct FormPostPage<'a> {
    pub action: &'a str,
    pub fields: Vec<(&'a str, &'a str)>,
    pub script: &'a str,
}

/// The one script deputy ever serves; the page's CSP allows it by hash.
const FORM_POST_SCRIPT: &str = "document.forms[0].submit();";

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

/// Render an interaction's reply: the page or the redirect, with its cookies.
pub fn reply(
    settings: &crate::config::Settings,
    issuer: &str,
    r: crate::interaction::Reply,
) -> HttpResponse {
    use crate::interaction::Answer;
    let status =
        |code: u16| StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match &r.answer {
        Answer::ToClient {
            redirect_uri,
            state,
            response_mode,
            params,
        } => {
            let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match response_mode {
                ResponseMode::Query => {
                    redirect_to_client(issuer, redirect_uri, state.as_deref(), &pairs)
                }
                ResponseMode::FormPost => {
                    post_to_client(issuer, redirect_uri, state.as_deref(), &pairs)
                }
            }
        }
        Answer::AfterLogout { uri, state } => match url::Url::parse(uri) {
            Ok(mut url) => {
                if let Some(st) = state {
                    url.query_pairs_mut().append_pair("state", st);
                }
                with_html_headers(HttpResponse::SeeOther())
                    .insert_header(("Location", url.to_string()))
                    .finish()
            }
            Err(_) => server_error(),
        },
        Answer::ToLoginForm { interaction } => {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("interaction", interaction)
                .finish();
            with_html_headers(HttpResponse::SeeOther())
                .insert_header(("Location", format!("/login?{query}")))
                .finish()
        }
        // A fixed path of deputy's own: nothing in the request chooses it.
        Answer::ToAccount => with_html_headers(HttpResponse::SeeOther())
            .insert_header(("Location", "/account"))
            .finish(),
        Answer::Login {
            client_name,
            interaction,
            csrf,
            login_hint,
            error,
            status: code,
            retry_after,
        } => {
            let mut resp = page(
                status(*code),
                &LoginPage {
                    client_name,
                    interaction,
                    csrf,
                    login_hint,
                    error: *error,
                },
            );
            if let Some(wait) = retry_after {
                if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&wait.to_string()) {
                    resp.headers_mut()
                        .insert(actix_web::http::header::RETRY_AFTER, v);
                }
            }
            resp
        }
        Answer::Consent {
            client_name,
            username,
            is_agent,
            resource,
            scopes,
            interaction,
            csrf,
            self_described,
        } => page(
            StatusCode::OK,
            &ConsentPage {
                client_name,
                username,
                is_agent: *is_agent,
                resource: resource.as_deref(),
                scopes: scopes.clone(),
                interaction,
                csrf,
                self_described: self_described.as_ref(),
            },
        ),
        Answer::LogoutConfirm {
            csrf,
            post_logout_redirect_uri,
            client_id,
            state,
        } => page(
            StatusCode::OK,
            &LogoutPage {
                csrf,
                post_logout_redirect_uri: post_logout_redirect_uri.as_deref(),
                client_id: client_id.as_deref(),
                state: state.as_deref(),
            },
        ),
        Answer::Message { title, message } => page(StatusCode::OK, &MessagePage { title, message }),
        Answer::Error {
            status: code,
            title,
            message,
        } => error(status(*code), title, message),
        Answer::TooManyRequests => too_many_requests(),
    };
    use crate::http::cookies;
    if let Some(v) = r.set_session {
        let _ = resp.add_cookie(&cookies::session_cookie(settings, v));
    }
    if let Some(v) = r.set_binding {
        let _ = resp.add_cookie(&cookies::browser_cookie(settings, v));
    }
    if r.clear_session {
        let _ = resp.add_cookie(&cookies::clear_session_cookie(settings));
    }
    resp
}

/// 303 to the client with the given parameters plus `state` and `iss`
/// (RFC 9207 §2: identify ourselves to defend against mix-up attacks).
pub fn redirect_to_client(
    issuer: &str,
    redirect_uri: &str,
    state: Option<&str>,
    params: &[(&str, &str)],
) -> HttpResponse {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return server_error();
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    with_html_headers(HttpResponse::SeeOther())
        .insert_header(("Location", url.to_string()))
        .finish()
}

/// The same answer as `redirect_to_client`, POSTed by the browser (Form Post
/// Response Mode §2). The page may run exactly its one script and submit
/// forms only to the redirect URI's origin; it is never cached.
pub fn post_to_client(
    issuer: &str,
    redirect_uri: &str,
    state: Option<&str>,
    params: &[(&str, &str)],
) -> HttpResponse {
    let Ok(url) = url::Url::parse(redirect_uri) else {
        return server_error();
    };
    let target = match url.origin() {
        url::Origin::Tuple(..) => url.origin().ascii_serialization(),
        // A private-use scheme (RFC 8252 §7.1) has no origin: allow that scheme.
        url::Origin::Opaque(_) => format!("{}:", url.scheme()),
    };
    let mut fields: Vec<(&str, &str)> = params.to_vec();
    if let Some(s) = state {
        fields.push(("state", s));
    }
    fields.push(("iss", issuer));
    let (mut b, body) = render(
        StatusCode::OK,
        &FormPostPage {
            action: redirect_uri,
            fields,
            script: FORM_POST_SCRIPT,
        },
    );
    b.insert_header((
        "Content-Security-Policy",
        format!(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{}'; \
             form-action {target}; frame-ancestors 'none'; base-uri 'none'",
            STANDARD.encode(crate::secret::sha256(FORM_POST_SCRIPT.as_bytes()))
        ),
    ));
    b.body(body)
}

/// The page for a request that failed on deputy's side: 503 with
/// `Retry-After` when the store is unavailable or busy (the person may simply
/// try again, as an API client gets `temporarily_unavailable`), else 500.
pub fn failure(what: &str, e: &crate::error::OAuthError) -> HttpResponse {
    tracing::error!(error = %e, "{what} failed");
    if e.status != StatusCode::SERVICE_UNAVAILABLE {
        return server_error();
    }
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "deputy cannot answer just now. Please try again in a moment.",
    );
    let seconds = e.retry_after.unwrap_or(1).to_string();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&seconds) {
        r.headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, v);
    }
    r
}

pub fn server_error() -> HttpResponse {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Please try again later.",
    )
}
