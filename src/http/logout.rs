//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2, §3).
//! With a valid `id_token_hint` issued from the current session the session
//! ends at once; otherwise the person confirms on a page (with a CSRF token)
//! first.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::audit::{AuditEvent, Mode};
use crate::error::OAuthError;
use crate::http::authorize::server_error_page;
use crate::http::form::{parse_form, Form, FormParams};
use crate::http::pages::{self, LogoutPage, MessagePage};
use crate::login;
use crate::secret::{constant_time_eq, sha256_b64};

pub async fn logout_get(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match parse_form(req.query_string().as_bytes()) {
        Ok(p) => run(&state, &req, p).await,
        Err(_) => pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The sign-out request is malformed.",
        ),
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
            pages::form_error(&e, server_error_page())
        }
        Err(_) => pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The sign-out request is malformed.",
        ),
    }
}

/// The logout confirmation's CSRF token: bound to this browser's cookie.
fn logout_csrf(browser: &str) -> String {
    sha256_b64(format!("deputy logout\0{browser}").as_bytes())
}

async fn run(state: &AppState, req: &HttpRequest, p: FormParams) -> HttpResponse {
    match handle(state, req, &p).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "logout failed");
            server_error_page()
        }
    }
}

async fn handle(
    state: &AppState,
    req: &HttpRequest,
    p: &FormParams,
) -> Result<HttpResponse, OAuthError> {
    let settings = &state.settings;
    let now = state.clock.now();
    // §2: the hint identifies the client (its `aud`) and the person; it may
    // have expired, but must be signed by us for our issuer.
    let hint = match p.get("id_token_hint") {
        Some(t) => match state.own_tokens.id_token_hint(now, t) {
            Ok(v) => Some(v),
            Err(_) => {
                return Ok(pages::error(
                    StatusCode::BAD_REQUEST,
                    "Cannot sign out",
                    "The id_token_hint is not valid.",
                ))
            }
        },
        None => None,
    };
    let hint_client = hint
        .as_ref()
        .and_then(|h| h.str_claim("aud"))
        .map(str::to_string);
    let client_id = match (p.get("client_id"), hint_client) {
        (Some(c), Some(h)) if c != h => {
            return Ok(pages::error(
                StatusCode::BAD_REQUEST,
                "Cannot sign out",
                "client_id does not match the id_token_hint.",
            ))
        }
        (Some(c), _) => Some(c.to_string()),
        (None, h) => h,
    };
    // §3: post_logout_redirect_uri must be registered for the client (exact match).
    let redirect = match p.get("post_logout_redirect_uri") {
        Some(uri) => {
            let Some(cid) = client_id.clone() else {
                return Ok(pages::error(
                    StatusCode::BAD_REQUEST,
                    "Cannot sign out",
                    "A redirect needs id_token_hint or client_id.",
                ));
            };
            let client = state
                .store
                .read(move |c| crate::store::clients::get(c, &cid))
                .await?;
            if !client.is_some_and(|c| c.post_logout_redirect_uris.iter().any(|r| r == uri)) {
                return Ok(pages::error(
                    StatusCode::BAD_REQUEST,
                    "Cannot sign out",
                    "The post-logout redirect URI is not registered.",
                ));
            }
            Some(uri.to_string())
        }
        None => None,
    };
    let session = login::current(state, req).await?;
    // §2: the OP asks unless the hint belongs to this session: the same
    // person and the same login. Every ID token of a session, refreshed ones
    // included, carries the session's `sid`; a new login is a new session
    // (the hint of an ended session asks, even one from the same second).
    // ID tokens issued before `sid` existed fall back to auth_time.
    let hint_matches = match (&hint, &session) {
        (Some(h), Some(s)) => {
            h.str_claim("sub") == Some(s.user.id.as_str())
                && match h.str_claim("sid") {
                    Some(sid) => sid == login::session_sid(&s.id_hash),
                    None => h.auth_time() == Some(s.session.auth_time),
                }
        }
        _ => false,
    };
    let confirmed = req.method() == actix_web::http::Method::POST
        && p.get("confirm") == Some("yes")
        && match (req.cookie(login::BROWSER_COOKIE), p.get("csrf")) {
            (Some(b), Some(csrf)) => {
                constant_time_eq(logout_csrf(b.value()).as_bytes(), csrf.as_bytes())
            }
            _ => false,
        };
    if session.is_some() && !hint_matches && !confirmed {
        let (browser, new_browser) = login::browser_id(req);
        let csrf = logout_csrf(&browser);
        let mut resp = pages::page(
            StatusCode::OK,
            &LogoutPage {
                csrf: &csrf,
                post_logout_redirect_uri: redirect.as_deref(),
                client_id: client_id.as_deref(),
                state: p.get("state"),
            },
        );
        if new_browser {
            let _ = resp.add_cookie(&login::browser_cookie(settings, browser));
        }
        return Ok(resp);
    }
    if let Some(s) = &session {
        let (h, uid) = (s.id_hash.clone(), s.user.id.clone());
        let mut e = AuditEvent::new(now, "logout", Mode::Person).person(Some(&uid));
        e.client_id = client_id.clone();
        state
            .store
            .write(move |c| {
                crate::store::sessions::delete_session(c, &h)?;
                crate::store::audit::insert(c, &e)
            })
            .await?;
    }
    let mut resp = match redirect {
        Some(uri) => {
            let Ok(mut url) = url::Url::parse(&uri) else {
                return Ok(server_error_page());
            };
            if let Some(st) = p.get("state") {
                url.query_pairs_mut().append_pair("state", st);
            }
            pages::with_html_headers(HttpResponse::SeeOther())
                .insert_header(("Location", url.to_string()))
                .finish()
        }
        None => pages::page(
            StatusCode::OK,
            &MessagePage {
                title: "Signed out",
                message: "You are signed out of deputy.",
            },
        ),
    };
    let _ = resp.add_cookie(&login::clear_session_cookie(settings));
    Ok(resp)
}
