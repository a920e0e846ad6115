//! `GET`/`POST /userinfo` (OIDC Core §5.3) with a Bearer access token
//! (RFC 6750 §2.1) or a DPoP-bound one with its proof (RFC 9449 §7).
//! Errors follow RFC 6750 §3.1 and RFC 9449 §7.1.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::app::AppState;
use crate::error::{ErrorCode, OAuthError};

/// The challenge scheme of an answer: the one the token came with (RFC 6750
/// §3 for Bearer, RFC 9449 §7.1 for DPoP, which names the algorithms).
fn challenge(dpop: bool, code: ErrorCode) -> String {
    if dpop {
        format!(
            "DPoP error=\"{}\", algs=\"{}\"",
            code.as_str(),
            crate::dpop::PROOF_ALGS.join(" ")
        )
    } else {
        format!("Bearer error=\"{}\"", code.as_str())
    }
}

fn invalid_token(dpop: bool) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidToken,
        "the access token is invalid, expired or revoked",
    )
    .with_www_authenticate(challenge(dpop, ErrorCode::InvalidToken))
}

/// A proof refusal at a resource: 401 with the DPoP challenge (RFC 9449
/// §7.1, §9), the nonce header kept.
fn proof_refused(mut e: OAuthError) -> OAuthError {
    let www = challenge(true, e.code);
    e.status = actix_web::http::StatusCode::UNAUTHORIZED;
    e.with_www_authenticate(www)
}

/// `Authorization: DPoP <token>` (RFC 9449 §7.1).
fn dpop_token(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let scheme = v.get(..5)?;
    if !scheme.eq_ignore_ascii_case("dpop ") {
        return None;
    }
    v.get(5..).map(str::trim).filter(|t| !t.is_empty())
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
    let (token, dpop) = match (bearer(&req), dpop_token(&req)) {
        (Some(t), None) => (t, false),
        (None, Some(t)) => (t, true),
        _ => {
            // RFC 6750 §3.1: no credentials at all is a bare challenge with
            // no error code. (RFC 9449 §7.1 allows a DPoP challenge too;
            // deputy keeps the one Bearer clients expect, and advertises
            // DPoP in discovery.)
            return Ok(HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish());
        }
    };
    // RFC 9449 §7: a DPoP token comes with a proof naming it (`ath`).
    let proof = if dpop {
        match crate::http::dpop::proof(&state, &req, "/userinfo", Some(token)).await {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                return Err(proof_refused(OAuthError::new(
                    ErrorCode::InvalidDpopProof,
                    "a DPoP token needs a DPoP proof",
                )))
            }
            Err(e)
                if e.code == ErrorCode::ServerError
                    || e.code == ErrorCode::TemporarilyUnavailable =>
            {
                return Err(e)
            }
            Err(e) => return Err(proof_refused(e)),
        }
    } else {
        None
    };
    let now = state.clock.now();
    let settings = &state.settings;
    let record = state
        .own_tokens
        .live_access_token(&state.store, now, token)
        .await?
        .map_err(|_not_live| invalid_token(dpop))?
        .record;
    // Token confusion: only tokens addressed to deputy itself are accepted here.
    if record.audience != settings.issuer {
        return Err(invalid_token(dpop));
    }
    // RFC 9449 §7.1-§7.2: a bound token only with a proof of its key, never
    // as a bearer token; an unbound token is not a DPoP token.
    match (&record.cnf_jkt, &proof) {
        (None, None) => {}
        (Some(bound), Some(p)) if *bound == p.jkt => {}
        _ => return Err(invalid_token(dpop)),
    }
    if let Some(p) = proof {
        // RFC 9449 §11.1: the proof is used once, across instances.
        let spent = state
            .store
            .write(move |c| {
                crate::store::dpop::spend_proof(c, &p.jkt, &p.jti, p.remember_until(now), now)
            })
            .await?;
        if !spent {
            return Err(proof_refused(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "the DPoP proof was used before",
            )));
        }
    }
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
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(Value::Object(claims)))
}
