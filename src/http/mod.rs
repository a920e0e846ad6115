//! HTTP: one module per endpoint; handlers parse and authenticate, call the
//! domain, and map the result. Routing and cross-cutting middleware live here.

pub mod account;
pub mod account_requests;
pub mod admin;
pub mod admin_params;
pub mod authorize;
pub mod bc_authorize;
pub mod cookies;
pub mod discovery;
pub mod dpop;
pub mod form;
pub mod health;
pub mod introspect;
pub mod jwks;
pub mod login;
pub mod logout;
pub mod metrics;
pub mod pages;
pub mod register;
pub mod revoke;
pub mod token;
pub mod userinfo;

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App, Error, HttpResponse};
use tracing::Instrument;

use crate::app::AppState;
use crate::error::{Allow, ErrorCode, OAuthError};

/// CORS for documents and endpoints browser-based clients use without
/// cookies (discovery, registration): any origin may read the answer.
fn any_origin() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new().add(("Access-Control-Allow-Origin", "*"))
}

/// The answer for any other method on a resource that supports `allow`.
/// GET resources also answer HEAD (RFC 9110 §9.1: general-purpose servers
/// MUST support it), with the same handler; the server sends no body.
fn only(allow: Allow) -> actix_web::Route {
    web::to(move || async move { Err::<HttpResponse, _>(OAuthError::method_not_allowed(allow)) })
}

async fn not_found() -> Result<HttpResponse, OAuthError> {
    Err(OAuthError::new(ErrorCode::NotFound, "no such endpoint"))
}

/// The whole application, for the server and for in-process tests.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .wrap_fn(|req, srv| {
            // A request id ties log lines together; the path is logged without
            // its query string, which may carry codes or tokens.
            let request_id = crate::secret::random_token(9);
            let span = tracing::info_span!(
                "request",
                request_id = %request_id,
                method = %req.method(),
                path = %req.path(),
            );
            let fut = srv.call(req);
            async move {
                let mut res = fut.await?.map_into_boxed_body();
                tracing::info!(status = res.status().as_u16(), "answered");
                if let Ok(v) = HeaderValue::from_str(&request_id) {
                    res.headers_mut()
                        .insert(HeaderName::from_static("x-request-id"), v);
                }
                Ok(res)
            }
            .instrument(span)
        })
        // Outermost: times the whole answer, the span above included.
        .wrap_fn(metrics::observe)
        .service(
            web::resource("/.well-known/openid-configuration")
                .wrap(any_origin())
                .route(web::get().to(discovery::openid_configuration))
                .route(web::head().to(discovery::openid_configuration))
                .route(web::method(actix_web::http::Method::OPTIONS).to(discovery::preflight))
                .default_service(only(Allow::GetHead)),
        )
        .service(
            web::resource("/.well-known/oauth-authorization-server")
                .wrap(any_origin())
                .route(web::get().to(discovery::oauth_authorization_server))
                .route(web::head().to(discovery::oauth_authorization_server))
                .route(web::method(actix_web::http::Method::OPTIONS).to(discovery::preflight))
                .default_service(only(Allow::GetHead)),
        )
        .service(
            web::resource("/register")
                .wrap(any_origin())
                .route(web::post().to(register::register))
                .route(web::method(actix_web::http::Method::OPTIONS).to(register::preflight))
                .default_service(web::to(register::other_method)),
        )
        .service(
            web::resource("/jwks")
                .route(web::get().to(jwks::jwks))
                .route(web::head().to(jwks::jwks))
                .default_service(only(Allow::GetHead)),
        )
        .service(
            web::resource("/token")
                .route(web::post().to(token::token))
                .default_service(only(Allow::Post)),
        )
        .service(
            web::resource("/bc-authorize")
                .route(web::post().to(bc_authorize::bc_authorize))
                .default_service(only(Allow::Post)),
        )
        .service(
            web::resource("/account/requests")
                .route(web::get().to(account_requests::list))
                .route(web::head().to(account_requests::list))
                .default_service(only(Allow::GetHead)),
        )
        .service(
            web::resource("/authorize")
                .route(web::get().to(authorize::authorize_get))
                .route(web::post().to(authorize::authorize_post))
                .default_service(only(Allow::GetPost)),
        )
        .service(
            web::resource("/login")
                .route(web::get().to(login::login_form))
                .route(web::post().to(login::login))
                .default_service(only(Allow::GetPost)),
        )
        .service(
            web::resource("/account")
                .route(web::get().to(account::page))
                .route(web::head().to(account::page))
                .default_service(only(Allow::GetHead)),
        )
        .service(
            web::resource("/account/withdraw")
                .route(web::post().to(account::withdraw))
                .default_service(only(Allow::Post)),
        )
        .service(
            web::resource("/account/signout-everywhere")
                .route(web::post().to(account::sign_out_everywhere))
                .default_service(only(Allow::Post)),
        )
        .service(
            web::resource("/consent")
                .route(web::post().to(login::consent))
                .default_service(only(Allow::Post)),
        )
        .service(
            web::resource("/logout")
                .route(web::get().to(logout::logout_get))
                .route(web::post().to(logout::logout_post))
                .default_service(only(Allow::GetPost)),
        )
        .service(
            web::resource("/userinfo")
                .route(web::get().to(userinfo::userinfo))
                .route(web::post().to(userinfo::userinfo))
                .default_service(only(Allow::GetPost)),
        )
        .service(
            web::resource("/introspect")
                .route(web::post().to(introspect::introspect))
                .default_service(only(Allow::Post)),
        )
        .service(
            web::resource("/revoke")
                .route(web::post().to(revoke::revoke))
                .default_service(only(Allow::Post)),
        )
        .service(admin::scope())
        .service(
            web::resource("/healthz")
                .route(web::get().to(health::healthz))
                .route(web::head().to(health::healthz))
                .default_service(only(Allow::GetHead)),
        )
        .service(
            web::resource("/readyz")
                .route(web::get().to(health::readyz))
                .route(web::head().to(health::readyz))
                .default_service(only(Allow::GetHead)),
        )
        // Last: a pattern with a variable is a regular expression tried on
        // every path that reaches it; the fixed paths above are cheaper.
        .service(
            web::resource("/account/requests/{handle}")
                .route(web::post().to(account_requests::decide))
                .default_service(only(Allow::Post)),
        )
        .default_service(web::to(not_found))
}

/// `Cache-Control: no-store` and `Pragma: no-cache` for responses that carry
/// tokens (RFC 6749 §5.1).
pub fn no_store_json(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(body)
}
