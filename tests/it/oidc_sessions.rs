//! ID tokens as hints about the browser's session: `id_token_hint` at
//! /authorize (OIDC Core §3.1.2.1) and at /logout (RP-Initiated Logout 1.0 §2).

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;

use crate::people::*;
use crate::support::*;

/// Sign `username` in with `browser` and return the token response.
async fn tokens<S>(app: &S, browser: &mut Browser, username: &str) -> serde_json::Value
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let code = sign_in(app, browser, "web", username, "").await;
    let (status, body) = redeem(app, "web", &code, "").await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn call<S>(app: &S, browser: &mut Browser, uri: &str) -> ServiceResponse
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let resp = test::call_service(
        app,
        test::TestRequest::get()
            .uri(uri)
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    browser.absorb(&resp);
    resp
}

fn logout_uri(hint: &str) -> String {
    format!("/logout?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Fapp.example%2Fbye")
}

async fn assert_asks(resp: ServiceResponse, what: &str) {
    assert_eq!(resp.status().as_u16(), 200, "{what}");
    assert!(resp.headers().get("location").is_none(), "{what}");
    assert!(
        body_text(resp).await.contains("name=\"confirm\""),
        "{what}: the confirmation page"
    );
}

#[actix_web::test]
async fn a_hint_from_an_ended_session_asks_before_logging_out_rp_initiated_logout_s2() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    let old = tokens(&app, &mut browser, "alice").await;
    let old_hint = old["id_token"].as_str().unwrap().to_string();
    let resp = call(&app, &mut browser, &logout_uri(&old_hint)).await;
    assert_eq!(resp.status().as_u16(), 303);
    // A new session for the same person, later.
    env.clock.advance(600);
    let new = tokens(&app, &mut browser, "alice").await;
    // The expired hint of the ended session: the OP asks, the session lives on.
    let resp = call(&app, &mut browser, &logout_uri(&old_hint)).await;
    assert_asks(resp, "old session's hint").await;
    assert_eq!(env.count("SELECT count(*) FROM sessions").await, 1);
    // A refreshed ID token keeps the session's auth_time: it matches, even
    // once expired (RP-Initiated Logout 1.0 §2 allows an expired hint).
    let refreshed = json_of(
        test::call_service(
            &app,
            form_post(
                "/token",
                &format!(
                    "grant_type=refresh_token&client_id=web&refresh_token={}",
                    new["refresh_token"].as_str().unwrap()
                ),
            )
            .to_request(),
        )
        .await,
    )
    .await
    .1;
    let hint = refreshed["id_token"].as_str().unwrap().to_string();
    env.clock.advance(env.state.settings.id_token_ttl + 1);
    let resp = call(&app, &mut browser, &logout_uri(&hint)).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        location(&resp).as_str(),
        "https://app.example/bye",
        "logged out at once"
    );
    assert_eq!(env.count("SELECT count(*) FROM sessions").await, 0);
}

#[actix_web::test]
async fn authorize_refuses_a_hint_that_is_not_ours_oidc_core_s3_1_2_1() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let t = tokens(&app, &mut Browser::default(), "alice").await;
    let id = t["id_token"].as_str().unwrap();
    let tampered = format!("{}AAAA", &id[..id.len() - 4]);
    let access = t["access_token"].as_str().unwrap();
    for hint in ["garbage", tampered.as_str(), access] {
        let resp = call(
            &app,
            &mut Browser::default(),
            &authorize_query("web", &format!("&id_token_hint={hint}")),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 303, "{hint}");
        let loc = location(&resp);
        assert!(loc.as_str().starts_with(REDIRECT));
        assert_eq!(query(&loc, "error").as_deref(), Some("invalid_request"));
        assert_eq!(query(&loc, "state").as_deref(), Some("st-1"));
        assert_eq!(query(&loc, "iss").as_deref(), Some(ISSUER));
    }
}

#[actix_web::test]
async fn authorize_hint_for_another_person_needs_a_new_login_oidc_core_s3_1_2_1() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    env.person("bob").await;
    let app = env.app().await;
    let bob = tokens(&app, &mut Browser::default(), "bob").await;
    let bob_hint = bob["id_token"].as_str().unwrap().to_string();
    let mut browser = Browser::default();
    let alice = tokens(&app, &mut browser, "alice").await;
    let alice_hint = alice["id_token"].as_str().unwrap().to_string();
    // Expired hints are fine (only signature and issuer are checked).
    env.clock.advance(env.state.settings.id_token_ttl + 1);
    let resp = call(
        &app,
        &mut browser,
        &authorize_query("web", &format!("&prompt=none&id_token_hint={bob_hint}")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        query(&location(&resp), "error").as_deref(),
        Some("login_required")
    );
    let resp = call(
        &app,
        &mut browser,
        &authorize_query("web", &format!("&id_token_hint={bob_hint}")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200, "the login page, not a code");
    assert!(body_text(resp).await.contains("name=\"password\""));
    // The signed-in person's own hint: straight back with a code.
    let resp = call(
        &app,
        &mut browser,
        &authorize_query("web", &format!("&prompt=none&id_token_hint={alice_hint}")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert!(query(&location(&resp), "code").is_some());
    // No session at all: login_required with prompt=none, else the login page.
    let mut fresh = Browser::default();
    let resp = call(
        &app,
        &mut fresh,
        &authorize_query("web", &format!("&prompt=none&id_token_hint={alice_hint}")),
    )
    .await;
    assert_eq!(
        query(&location(&resp), "error").as_deref(),
        Some("login_required")
    );
    let resp = call(
        &app,
        &mut fresh,
        &authorize_query("web", &format!("&id_token_hint={alice_hint}")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
}
