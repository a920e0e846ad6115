//! `GET /jwks`: deputy's published public keys (RFC 7517 §5).

use actix_web::{web, HttpResponse};

use crate::app::AppState;

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let now = state.clock.now();
    let body = state
        .keys
        .ring()
        .jwks_text(now, state.settings.max_jwt_lifetime());
    HttpResponse::Ok()
        .insert_header((
            "Cache-Control",
            format!("public, max-age={}", state.settings.jwks_max_age),
        ))
        .content_type("application/jwk-set+json")
        .body(body)
}
