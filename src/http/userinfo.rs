//! `GET`/`POST /userinfo` (OIDC Core §5.3) with a Bearer access token
//! (RFC 6750 §2.1) or a DPoP-bound one with its proof (RFC 9449 §7).
//! Errors follow RFC 6750 §3.1 and RFC 9449 §7.1.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::app::AppState;
use crate::error::{ErrorCode, OAuthError};

fn invalid_token(dpop: bool) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidToken,
        "the access token is invalid, expired or revoked",
    )
    .with_www_authenticate(crate::http::dpop::challenge(dpop, ErrorCode::InvalidToken))
}

/// RFC 6750 §2.1: `Authorization: Bearer <token>`.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let scheme = v.get(..7)?;
    if !scheme.eq_ignore_ascii_case("bearer ") {
        return None;
    }
    v.get(7..).map(str::trim).filter(|t| !t.is_empty())
}

pub async fn userinfo(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    // RFC 9449 §7: a DPoP token comes with a proof naming it (`ath`).
    let Some(presented) = crate::http::dpop::presented_token(&state, &req, "/userinfo").await?
    else {
        // RFC 6750 §3.1: no credentials at all is a bare challenge with no
        // error code. (RFC 9449 §7.1 allows a DPoP challenge too; deputy
        // keeps the one Bearer clients expect, and advertises DPoP in
        // discovery.)
        return Ok(HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish());
    };
    let dpop = presented.is_dpop();
    let now = state.clock.now();
    let settings = &state.settings;
    let record = state
        .own_tokens
        .live_access_token(&state.store, now, &presented.token)
        .await?
        .map_err(|_not_live| invalid_token(dpop))?
        .record;
    // Token confusion: only tokens addressed to deputy itself are accepted here.
    if record.audience != settings.issuer {
        return Err(invalid_token(dpop));
    }
    // RFC 9449 §7.2: a bound token without its proof is refused, and the
    // challenge names the scheme it needs.
    if !presented.binding_holds(record.cnf_jkt.as_deref()) {
        return Err(invalid_token(true));
    }
    presented.spend_proof(&state).await?;
    let scopes: Vec<&str> = record.scope.split(' ').collect();
    if !scopes.contains(&"openid") {
        return Err(OAuthError::new(
            ErrorCode::InsufficientScope,
            "the token lacks the openid scope",
        )
        .with_www_authenticate(if dpop {
            "DPoP error=\"insufficient_scope\", scope=\"openid\""
        } else {
            "Bearer error=\"insufficient_scope\", scope=\"openid\""
        }));
    }
    let sub = record.subject.clone();
    let user = state
        .store
        .read(move |c| crate::store::users::by_id(c, &sub))
        .await?;
    let Some(user) = user.filter(|u| u.disabled_at.is_none()) else {
        return Err(invalid_token(dpop));
    };
    let claims = crate::token::person_claims::userinfo_claims(&user, &scopes);
    let mut answer = HttpResponse::Ok();
    answer.insert_header(("Cache-Control", "no-store"));
    if dpop {
        if let Some(nonce) = crate::http::dpop::nonce_header(&state).await? {
            answer.insert_header(nonce);
        }
    }
    Ok(answer.json(Value::Object(claims)))
}
