//! Metrics over HTTP: the middleware that times every request of the main
//! application, and the listener of its own that serves `GET /metrics`
//! (`metrics_bind`), so the exposition never reaches the public port.

use std::future::Future;
use std::time::Duration;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::{web, App, Error, HttpResponse, HttpServer};

use crate::config::Settings;
use crate::metrics::Timer;

/// Middleware (`App::wrap_fn`): one observation per answered request, by
/// route pattern, method and status. Off, it only passes the request on.
pub fn observe<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    let timer = Timer::start();
    let fut = srv.call(req);
    async move {
        let res = fut.await?;
        if let Some(elapsed) = timer.elapsed() {
            let req = res.request();
            crate::metrics::http_request(
                req.match_pattern(),
                req.method().as_str(),
                res.status().as_u16(),
                elapsed,
            );
        }
        Ok(res)
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(crate::metrics::render())
}

/// The metrics listener's application: `GET`/`HEAD /metrics`, nothing else.
pub fn listener_app() -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse,
        Error = Error,
        InitError = (),
    >,
> {
    App::new()
        .service(
            web::resource("/metrics")
                .route(web::get().to(metrics))
                .route(web::head().to(metrics))
                .default_service(web::to(|| async {
                    HttpResponse::MethodNotAllowed()
                        .insert_header((header::ALLOW, "GET, HEAD"))
                        .finish()
                })),
        )
        .default_service(web::to(|| async { HttpResponse::NotFound().finish() }))
}

/// When `metrics_bind` is set: turn metrics on and serve them on their own
/// listener (one worker), as a task of the current actix system. It stops
/// with the process (and on the same signals as the main server).
pub fn spawn(settings: &Settings) -> Result<(), String> {
    let Some(addr) = settings.metrics_addr().map_err(|e| e.to_string())? else {
        return Ok(());
    };
    crate::metrics::install();
    let server = HttpServer::new(listener_app)
        .workers(1)
        .max_connections(64)
        .client_request_timeout(Duration::from_secs(5))
        .client_disconnect_timeout(Duration::from_secs(1))
        .bind(addr)
        .map_err(|e| format!("setting `metrics_bind`: cannot listen on {addr}: {e}"))?
        .run();
    tracing::info!(%addr, "metrics serving");
    actix_web::rt::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test;

    #[actix_web::test]
    async fn the_listener_serves_only_metrics() {
        let app = test::init_service(listener_app()).await;
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let resp =
            test::call_service(&app, test::TestRequest::post().uri("/metrics").to_request()).await;
        assert_eq!(resp.status(), 405);
        for path in ["/", "/token", "/metrics/x"] {
            let resp =
                test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(resp.status(), 404, "{path}");
        }
    }
}
