//! `/admin`: the admin API (JSON). Every route sits in one scope wrapped by
//! `require_admin`, which answers 401/403 (RFC 6750 §3.1) before any handler,
//! unknown path or wrong method is reached; and every handler also takes an
//! `AdminCaller`, which cannot be obtained without the same check. A route
//! added here cannot forget authorization twice over.

use std::future::Future;
use std::pin::Pin;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{HttpServiceFactory, Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, Error, FromRequest, HttpMessage, HttpRequest, HttpResponse};

use crate::admin::{self, AdminCaller, Origin};
use crate::app::AppState;
use crate::error::{ErrorCode, OAuthError};
use crate::http::admin_params as params;
use crate::http::form::MAX_BODY;
use crate::http::no_store_json;

/// The admin routes, for the router and for tests that must cover them all.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/tokens"),
    ("GET", "/admin/tokens/{jti}"),
    ("POST", "/admin/revoke"),
    ("GET", "/admin/audit"),
];

pub fn scope() -> impl HttpServiceFactory {
    web::scope("/admin")
        .wrap(from_fn(require_admin))
        .service(
            web::resource("/tokens")
                .route(web::get().to(list_tokens))
                .default_service(super::only(crate::error::Allow::Get)),
        )
        .service(
            web::resource("/tokens/{jti}")
                .route(web::get().to(trace_token))
                .default_service(super::only(crate::error::Allow::Get)),
        )
        .service(
            web::resource("/revoke")
                .route(web::post().to(revoke))
                .default_service(super::only(crate::error::Allow::Post)),
        )
        .service(
            web::resource("/audit")
                .route(web::get().to(audit))
                .default_service(super::only(crate::error::Allow::Get)),
        )
        .default_service(web::to(super::not_found))
}

fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, OAuthError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| OAuthError::server_error("application state missing"))
}

/// The caller, and whether it came with a DPoP proof.
async fn check(req: &HttpRequest) -> Result<(AdminCaller, bool), OAuthError> {
    let state = app_state(req)?;
    // Bearer, or DPoP with a proof for this request (RFC 9449 §7.1).
    let presented = crate::http::dpop::presented_token(&state, req, req.path()).await?;
    let caller = admin::authorize(
        &state.own_tokens,
        &state.store,
        &state.settings.issuer,
        state.clock.now(),
        presented.as_ref().map(|p| crate::admin::caller::Presented {
            token: &p.token,
            proof_jkt: p.proof.as_ref().map(|v| v.jkt.as_str()),
        }),
    )
    .await?;
    if let Some(p) = &presented {
        p.spend_proof(&state).await?;
    }
    Ok((caller, presented.is_some_and(|p| p.is_dpop())))
}

async fn app_nonce(req: &ServiceRequest) -> Result<Option<(HeaderName, HeaderValue)>, OAuthError> {
    let state = app_state(req.request())?;
    crate::http::dpop::nonce_header(&state).await
}

/// The gate in front of everything under `/admin`.
async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    match check(req.request()).await {
        Ok((caller, dpop)) => {
            req.extensions_mut().insert(caller);
            // RFC 9449 §8.2: a fresh nonce with the answer, when required.
            let nonce = match dpop {
                true => match app_nonce(&req).await {
                    Ok(n) => n,
                    Err(e) => return Ok(req.error_response(e)),
                },
                false => None,
            };
            let mut res = next.call(req).await?.map_into_boxed_body();
            if let Some((name, value)) = nonce {
                res.headers_mut().insert(name, value);
            }
            Ok(res)
        }
        Err(e) => Ok(req.error_response(e)),
    }
}

/// A handler's proof that the request was authorized: taken from the gate,
/// or — should a handler ever be mounted outside the scope — checked afresh.
impl FromRequest for AdminCaller {
    type Error = OAuthError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = req.extensions().get::<AdminCaller>().cloned();
        let req = req.clone();
        Box::pin(async move {
            match found {
                Some(caller) => Ok(caller),
                None => check(&req).await.map(|(caller, _)| caller),
            }
        })
    }
}

/// A JSON body of at most `MAX_BODY` bytes.
async fn json_body(req: &HttpRequest, mut payload: web::Payload) -> Result<Vec<u8>, OAuthError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(OAuthError::invalid_request(
            "content type must be application/json",
        ));
    }
    crate::http::form::read_body(&mut payload, MAX_BODY, 256).await
}

/// `GET /admin/tokens`
async fn list_tokens(
    _caller: AdminCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let filter = params::token_filter(req.query_string())?;
    let now = state.clock.now();
    let list = state
        .store
        .read(move |c| admin::view::list(c, &filter, now))
        .await?;
    Ok(no_store_json(list))
}

/// `GET /admin/tokens/{jti}`: the trace, or 404.
async fn trace_token(
    _caller: AdminCaller,
    state: web::Data<AppState>,
    jti: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    let jti = params::path_jti(jti.into_inner())?;
    let now = state.clock.now();
    let trace = state
        .store
        .read(move |c| admin::view::trace(c, &jti, now))
        .await?;
    trace
        .map(no_store_json)
        .ok_or_else(|| OAuthError::new(ErrorCode::NotFound, "no such token"))
}

/// `POST /admin/revoke` with `{"jti"|"sub"|"client_id"|"actor"|"grant_id": ...}`.
async fn revoke(
    caller: AdminCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let selector = params::revoke_selector(&json_body(&req, payload).await?)?;
    let now = state.clock.now();
    let admin_client = caller.client_id.clone();
    let (kind, value) = (selector.name(), selector.value().to_string());
    let origin = Origin::Api(caller.clone());
    let revoked = state
        .store
        .write(move |c| {
            if let Err(e) = admin::caller::still_authorized(c, &caller, now)? {
                return Ok(Err(e));
            }
            admin::revoke::revoke(c, &selector, &origin, now).map(Ok)
        })
        .await??;
    tracing::info!(client_id = %admin_client, selector = kind, value = %value, revoked, "admin revocation");
    Ok(no_store_json(serde_json::json!({ "revoked": revoked })))
}

/// `GET /admin/audit`
async fn audit(
    _caller: AdminCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let q = params::audit_query(req.query_string())?;
    let trail = state.store.read(move |c| admin::view::audit(c, &q)).await?;
    Ok(no_store_json(trail))
}
