//! Behind a proxy: the failure budget of an address is kept for the address
//! a trusted proxy forwarded, and for the peer itself when the peer is not
//! trusted, whatever it claims in `X-Forwarded-For`.

use std::net::SocketAddr;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use base64::Engine;
use deputy::proxies::TrustedProxies;

use crate::support::*;

const PROXY: &str = "127.0.0.1";

/// Settings trusting `PROXY` and the 10.0.0.0/8 tier behind it, with a
/// budget of three failed client authentications per address.
fn env() -> Env {
    let dir = temp_dir();
    let mut settings = settings_in(&dir);
    settings.auth_failure_limit = 3;
    settings.trusted_proxies = TrustedProxies::parse(["127.0.0.1", "10.0.0.0/8"]).unwrap();
    Env::with_settings(dir, settings, T0)
}

fn from(ip: &str) -> SocketAddr {
    format!("{ip}:40000").parse().unwrap()
}

/// A failing client authentication (an unknown client id of its own, so
/// only the address's budget is spent) from `peer`, forwarding `xff`.
fn failing(n: usize, peer: &str, xff: Option<&str>) -> actix_http::Request {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("nobody-{n}:wrong"));
    let mut req = form_post("/token", "grant_type=client_credentials")
        .insert_header(("Authorization", format!("Basic {basic}")))
        .peer_addr(from(peer));
    if let Some(xff) = xff {
        req = req.insert_header(("X-Forwarded-For", xff));
    }
    req.to_request()
}

async fn status(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
    req: actix_http::Request,
) -> u16 {
    test::call_service(app, req).await.status().as_u16()
}

#[actix_web::test]
async fn behind_a_trusted_proxy_the_budget_is_the_forwarded_addresss() {
    let env = env();
    let app = env.app().await;
    for n in 0..3 {
        assert_eq!(
            status(&app, failing(n, PROXY, Some("198.51.100.1"))).await,
            401
        );
    }
    // The forwarded client's budget is spent...
    assert_eq!(
        status(&app, failing(3, PROXY, Some("198.51.100.1"))).await,
        429
    );
    // ...not the proxy's: another client behind it is answered as usual.
    assert_eq!(
        status(&app, failing(4, PROXY, Some("198.51.100.2"))).await,
        401
    );
    // Through a second trusted tier the client is still 198.51.100.1.
    assert_eq!(
        status(&app, failing(5, PROXY, Some("198.51.100.1, 10.0.0.7"))).await,
        429
    );
    // Entries left of the right-most untrusted one are the client's own
    // words: changing them does not give it a fresh budget.
    for (n, spoof) in ["192.0.2.1", "10.0.0.1", "unknown"].iter().enumerate() {
        let xff = format!("{spoof}, 198.51.100.1");
        assert_eq!(status(&app, failing(6 + n, PROXY, Some(&xff))).await, 429);
    }
}

#[actix_web::test]
async fn an_untrusted_peer_is_its_own_address_whatever_it_forwards() {
    let env = env();
    let app = env.app().await;
    for n in 0..3 {
        let xff = format!("198.51.100.{n}");
        assert_eq!(
            status(&app, failing(n, "203.0.113.5", Some(&xff))).await,
            401
        );
    }
    assert_eq!(
        status(&app, failing(3, "203.0.113.5", Some("198.51.100.99"))).await,
        429
    );
    assert_eq!(status(&app, failing(4, "203.0.113.5", None)).await, 429);
    // The address it kept naming was never charged.
    assert_eq!(
        status(&app, failing(5, PROXY, Some("198.51.100.0"))).await,
        401
    );
}

#[actix_web::test]
async fn with_no_trusted_proxies_the_header_is_ignored() {
    let dir = temp_dir();
    let mut settings = settings_in(&dir);
    settings.auth_failure_limit = 3;
    let env = Env::with_settings(dir, settings, T0);
    let app = env.app().await;
    for n in 0..3 {
        let xff = format!("198.51.100.{n}");
        assert_eq!(status(&app, failing(n, PROXY, Some(&xff))).await, 401);
    }
    assert_eq!(
        status(&app, failing(3, PROXY, Some("198.51.100.50"))).await,
        429
    );
}

#[actix_web::test]
async fn a_malformed_forwarded_entry_is_charged_to_the_proxy() {
    let env = env();
    let app = env.app().await;
    for n in 0..3 {
        assert_eq!(
            status(&app, failing(n, PROXY, Some("not-an-ip"))).await,
            401
        );
    }
    // The proxy itself (the last good hop) spent its budget, whatever
    // garbage the next request carries.
    assert_eq!(
        status(&app, failing(3, PROXY, Some("still-not"))).await,
        429
    );
    assert_eq!(status(&app, failing(4, PROXY, None)).await, 429);
    // A well-formed client behind it is unaffected.
    assert_eq!(
        status(&app, failing(5, PROXY, Some("198.51.100.1"))).await,
        401
    );
}
