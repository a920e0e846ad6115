//! `POST /introspect` (RFC 7662 §2), as a visible pipeline:
//! no-store → strict form → client authentication (confidential clients
//! only) → assertion spent → `token` present → the store decides →
//! JSON, or a signed JWT when the caller asks for one (RFC 9701).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::client_auth;
use crate::error::OAuthError;
use crate::http::form::Form;
use crate::http::no_store_json;
use crate::introspection::{self, JWT_RESPONSE_MEDIA_TYPE};
use crate::model::AuthMethod;

pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    Form(form): Form,
) -> Result<HttpResponse, OAuthError> {
    // RFC 7662 §2.1 and §4: the caller must authenticate first (a bad
    // credential is invalid_client whatever else is wrong); a public client
    // has no credential, so it may not introspect.
    let address = crate::http::cookies::address(&req);
    let credentials = crate::http::form::client_credentials(&req, &form, &address);
    let auth = client_auth::authenticate(&state.auth_context(), &credentials).await?;
    if auth.method == AuthMethod::None {
        return Err(OAuthError::invalid_client());
    }
    // RFC 7662 §2.1: `token` is required; `token_type_hint` is only a hint and
    // the search covers every type whatever it says, so it is not read.
    // RFC 7523 §3 item 7: introspection writes nothing else, so the client
    // assertion is spent here, before anything is answered (errors too).
    client_auth::spend(&state.store, &auth).await?;
    let token = form.require("token")?;
    let now = state.clock.now();
    let answer =
        introspection::introspect(&state.own_tokens, &state.store, now, &auth.client.id, token)
            .await?;
    if accepts_jwt(&req) {
        let jwt = introspection::signed_response(
            &state.keys.ring(),
            &state.settings.issuer,
            now,
            &auth.client.id,
            &answer,
        )?;
        return Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .content_type(JWT_RESPONSE_MEDIA_TYPE)
            .body(jwt));
    }
    Ok(no_store_json(answer))
}

/// RFC 9701 §4: the caller asks for the JWT response by listing its media
/// type in `Accept` (a range with `q=0` refuses it, RFC 9110 §12.4.2).
fn accepts_jwt(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case(JWT_RESPONSE_MEDIA_TYPE)
                && !parts.any(|p| match p.split_once('=') {
                    Some((k, v)) if k.trim().eq_ignore_ascii_case("q") => {
                        v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                    }
                    _ => false,
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn with_accept(v: &str) -> HttpRequest {
        TestRequest::default()
            .insert_header((header::ACCEPT, v))
            .to_http_request()
    }

    #[test]
    fn accept_header_selects_the_jwt_response() {
        assert!(accepts_jwt(&with_accept(
            "application/token-introspection+jwt"
        )));
        assert!(accepts_jwt(&with_accept(
            "application/json;q=0.5, Application/Token-Introspection+JWT"
        )));
        assert!(!accepts_jwt(&with_accept("application/json")));
        assert!(!accepts_jwt(&with_accept("*/*")));
        assert!(!accepts_jwt(&with_accept(
            "application/token-introspection+jwt;q=0"
        )));
        assert!(!accepts_jwt(&TestRequest::default().to_http_request()));
    }
}
