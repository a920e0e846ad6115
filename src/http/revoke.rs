//! `POST /revoke` (RFC 7009 §2), as a visible pipeline:
//! no-store → strict form → client authentication → `token` present → hint
//! known → revocation (one transaction with its audit event) → 200.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::client_auth;
use crate::error::OAuthError;
use crate::http::form::Form;
use crate::revocation;

pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    Form(form): Form,
) -> Result<HttpResponse, OAuthError> {
    // RFC 7009 §2.1: the server first validates the client credentials
    // (confidential clients authenticate; a public client identifies itself
    // with `client_id`, RFC 6749 §2.3 `none`).
    let address = crate::http::cookies::address(&req);
    let credentials = crate::http::form::client_credentials(&req, &form, &address);
    let auth = client_auth::authenticate(&state.auth_context(), &credentials).await?;
    // RFC 7009 §2.1: `token` is required; `token_type_hint` is optional. A
    // refused request still spends its client assertion (RFC 7523 §3 item 7).
    let job = form
        .require("token")
        .and_then(|token| {
            revocation::check_hint(form.get("token_type_hint"))?;
            Ok(revocation::revoke(
                &state.own_tokens,
                state.clock.now(),
                &auth,
                token,
            ))
        })
        .unwrap_or_else(client_auth::refused);
    client_auth::conclude(&state.store, &auth, job).await?;
    // RFC 7009 §2.2: 200 whether or not anything was revoked; the body is
    // ignored by the client, so there is none.
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .finish())
}
