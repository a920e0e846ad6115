//! `/healthz`: the process is up. `/readyz`: the database answers.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::app::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let probe = state
        .store
        .read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
        .await;
    match probe {
        Ok(1) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Ok(_) | Err(_) => {
            tracing::warn!("readiness probe failed");
            HttpResponse::ServiceUnavailable().json(json!({"status": "unavailable"}))
        }
    }
}
