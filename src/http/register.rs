//! `POST /register`: dynamic client registration (RFC 7591 §3), under the
//! `registration` setting; off, there is no such endpoint (404). Browser
//! clients may call it (CORS, `Access-Control-Allow-Origin: *`: it takes no
//! cookies and answers nothing a page could not learn by registering).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::app::AppState;
use crate::client_registry::registration::{
    register as register_client, RegistrationError, RegistrationRequest,
};
use crate::error::{ErrorCode, OAuthError};

/// RFC 7591 §3.1: a JSON body; a client's metadata is small.
const MAX_BODY: usize = 16 * 1024;

fn invalid_token() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidToken,
        "a valid initial access token is required",
    )
    .with_www_authenticate("Bearer error=\"invalid_token\"")
}

fn metadata_error(why: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, why)
}

/// Registration off: no such endpoint, whatever the method.
fn closed(state: &AppState) -> Result<(), OAuthError> {
    if state.settings.registration == crate::config::RegistrationMode::Off {
        return Err(OAuthError::new(ErrorCode::NotFound, "no such endpoint"));
    }
    Ok(())
}

pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    closed(&state)?;
    let lookup = state.client_lookup();
    let address = crate::http::cookies::address(&req);
    if !state.registration_by_address.allow(&address, lookup.now) {
        return Err(crate::limits::too_many());
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(OAuthError::invalid_request(
            "the registration request must be application/json",
        ));
    }
    if body.len() > MAX_BODY {
        return Err(metadata_error("the client metadata is too large"));
    }
    let metadata: Value = serde_json::from_slice(&body)
        .map_err(|_never_echoed| metadata_error("the client metadata is not JSON"))?;
    let token = crate::http::userinfo::bearer(&req);
    let registered = register_client(
        &lookup,
        RegistrationRequest {
            metadata: &metadata,
            initial_access_token: token,
            address: &address,
        },
    )
    .await
    .map_err(|e| match e {
        RegistrationError::Off => OAuthError::new(ErrorCode::NotFound, "no such endpoint"),
        RegistrationError::InvalidToken => invalid_token(),
        RegistrationError::Metadata(m) => {
            let code = match m.code() {
                "invalid_redirect_uri" => ErrorCode::InvalidRedirectUri,
                _ => ErrorCode::InvalidClientMetadata,
            };
            OAuthError::new(code, m.description().to_string())
        }
        RegistrationError::Store(e) => e,
    })?;
    // RFC 7591 §3.2.1: the client's id, when it was issued, its secret (only
    // for a secret method, shown this once) and the metadata as registered.
    let mut answer = registered.metadata.to_json();
    answer.insert("client_id".into(), registered.client.id.clone().into());
    answer.insert(
        "client_id_issued_at".into(),
        registered.client.created_at.into(),
    );
    if let Some(secret) = registered.secret {
        answer.insert("client_secret".into(), secret.into());
        answer.insert("client_secret_expires_at".into(), 0.into());
    }
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(Value::Object(answer)))
}

/// CORS preflight (Fetch Standard §3.2): what a browser may send here.
pub async fn preflight(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    closed(&state)?;
    Ok(HttpResponse::NoContent()
        .insert_header(("Access-Control-Allow-Methods", "POST"))
        .insert_header((
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type",
        ))
        .insert_header(("Access-Control-Max-Age", "600"))
        .finish())
}

/// Any other method: 405 with `Allow: POST` (RFC 9110 §15.5.6), or 404
/// when registration is off.
pub async fn other_method(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    closed(&state)?;
    Err(OAuthError::method_not_allowed(crate::error::Allow::Post))
}
