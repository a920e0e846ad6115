//! `/healthz`: the process is up. `/readyz`: the database answers, and its
//! path still names the file the server opened.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::app::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    // On a reader thread: the file check touches the file system too.
    let probe = state
        .store
        .read(move |c| Ok(crate::store::ping(c)? && store.file_is_current()))
        .await;
    match probe {
        Ok(true) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Ok(false) | Err(_) => {
            tracing::warn!("readiness probe failed");
            HttpResponse::ServiceUnavailable().json(json!({"status": "unavailable"}))
        }
    }
}
