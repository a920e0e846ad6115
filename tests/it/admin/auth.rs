//! Who may call `/admin`: RFC 6750 §3.1 answers for a missing, bad, revoked
//! or under-scoped token, on every route, unknown path and method.

use actix_web::test;
use deputy::http::admin::ROUTES;
use serde_json::Value;

use super::*;
use crate::support::*;
use crate::token_status::{token_for, App};

/// Status, `error` and `WWW-Authenticate` of a request.
async fn call(
    app: &impl App,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, Option<String>) {
    let mut req = test::TestRequest::default()
        .method(method.parse().unwrap())
        .uri(path)
        .insert_header(("Content-Type", "application/json"))
        .set_payload(r#"{"jti":"x"}"#);
    if let Some(a) = authorization {
        req = req.insert_header(("Authorization", a.to_string()));
    }
    let resp = test::call_service(app, req.to_request()).await;
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let (status, body) = json_of(resp).await;
    (status, body["error"].as_str().map(str::to_string), www)
}

fn concrete(path: &str) -> String {
    path.replace("{jti}", "some-jti")
}

/// Every admin route, plus paths and methods no route answers.
fn everything_under_admin() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), concrete(p)))
        .collect();
    for (m, p) in ROUTES {
        let other = if *m == "GET" { "POST" } else { "GET" };
        all.push((other.to_string(), concrete(p)));
        all.push(("DELETE".to_string(), concrete(p)));
    }
    for p in ["/admin", "/admin/", "/admin/nope", "/admin/tokens/a/b"] {
        all.push(("GET".to_string(), p.to_string()));
    }
    all
}

#[actix_web::test]
async fn without_a_token_is_401_invalid_token_with_a_bearer_challenge() {
    let env = Env::new();
    let app = env.app().await;
    assert_eq!(
        call(&app, "GET", "/admin/tokens", None).await,
        (401, Some("invalid_token".into()), Some("Bearer".into()))
    );
    // Another scheme is no Bearer token either (RFC 6750 §2.1).
    assert_eq!(
        call(&app, "GET", "/admin/tokens", Some("Basic YWRtaW46eA==")).await,
        (401, Some("invalid_token".into()), Some("Bearer".into()))
    );
}

#[actix_web::test]
async fn garbage_is_401_invalid_token() {
    let env = Env::new();
    let app = env.app().await;
    let expected = (
        401,
        Some("invalid_token".to_string()),
        Some("Bearer error=\"invalid_token\"".to_string()),
    );
    for token in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        assert_eq!(
            call(
                &app,
                "GET",
                "/admin/tokens",
                Some(&format!("Bearer {token}"))
            )
            .await,
            expected,
            "{token}"
        );
    }
}

fn insufficient() -> (u16, Option<String>, Option<String>) {
    (
        403,
        Some("insufficient_scope".into()),
        Some("Bearer error=\"insufficient_scope\", scope=\"deputy:admin\"".into()),
    )
}

#[actix_web::test]
async fn a_token_without_the_admin_scope_is_403() {
    let env = Env::new();
    let app = env.app().await;
    let secret = admin_client(&env, "ops").await;
    // Addressed to deputy, but only `read`.
    let t = token_for(
        &app,
        "ops",
        &secret,
        &format!("&scope=read&resource={}", enc(ISSUER)),
    )
    .await;
    assert_eq!(
        call(&app, "GET", "/admin/tokens", Some(&format!("Bearer {t}"))).await,
        insufficient()
    );
}

#[actix_web::test]
async fn the_admin_scope_for_another_audience_is_403() {
    let env = Env::new();
    let app = env.app().await;
    let secret = admin_client(&env, "ops").await;
    let t = token_for(
        &app,
        "ops",
        &secret,
        "&scope=deputy%3Aadmin&resource=https%3A%2F%2Fapi.example",
    )
    .await;
    assert_eq!(peek(&t).1["scope"], "deputy:admin");
    assert_eq!(
        call(&app, "GET", "/admin/tokens", Some(&format!("Bearer {t}"))).await,
        insufficient()
    );
}

#[actix_web::test]
async fn every_admin_route_refuses_without_the_admin_token() {
    let env = Env::new();
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    let secret = admin_client(&env, "ops").await;
    let reader = token_for(
        &app,
        "ops",
        &secret,
        &format!("&scope=read&resource={}", enc(ISSUER)),
    )
    .await;
    for (method, path) in everything_under_admin() {
        let (status, error, _) = call(&app, &method, &path, None).await;
        assert_eq!(
            (status, error.as_deref()),
            (401, Some("invalid_token")),
            "{method} {path} without a token"
        );
        let (status, error, _) = call(&app, &method, &path, Some("Bearer junk")).await;
        assert_eq!((status, error.as_deref()), (401, Some("invalid_token")));
        let (status, error, _) =
            call(&app, &method, &path, Some(&format!("Bearer {reader}"))).await;
        assert_eq!(
            (status, error.as_deref()),
            (403, Some("insufficient_scope")),
            "{method} {path} with a read token"
        );
    }
    // Past the gate, the router answers as usual: so the gate really was first.
    let auth = format!("Bearer {admin}");
    assert_eq!(call(&app, "GET", "/admin/nope", Some(&auth)).await.0, 404);
    assert_eq!(
        call(&app, "DELETE", "/admin/tokens", Some(&auth)).await.0,
        405
    );
    for (method, path) in ROUTES {
        let (status, _, _) = call(&app, method, &concrete(path), Some(&auth)).await;
        assert!(
            [200, 404].contains(&status),
            "{method} {path} with the admin token: {status}"
        );
    }
}

#[actix_web::test]
async fn a_revoked_or_expired_admin_token_stops_working_at_once() {
    let env = Env::new();
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    let (status, body) = get(&app, "/admin/tokens", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.is_array());

    // Revoked by an admin (itself): the next request is refused.
    let jti = peek(&admin).1["jti"].as_str().unwrap().to_string();
    let (status, body) = post_revoke(&app, &admin, serde_json::json!({ "jti": jti })).await;
    assert_eq!((status, body), (200, serde_json::json!({"revoked": 1})));
    let (status, body) = get(&app, "/admin/tokens", &admin).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );

    // A fresh one works until it expires.
    let secret = admin_client(&env, "admin2").await;
    let fresh = token_for(
        &app,
        "admin2",
        &secret,
        &format!("&scope=deputy%3Aadmin&resource={}", enc(ISSUER)),
    )
    .await;
    assert_eq!(get(&app, "/admin/audit", &fresh).await.0, 200);
    env.clock.advance(env.state.settings.access_token_ttl);
    let (status, body): (u16, Value) = get(&app, "/admin/audit", &fresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
}

#[actix_web::test]
async fn a_persons_token_never_administers_even_with_the_admin_scope() {
    use crate::people::*;
    let env = Env::new();
    // A frontend wrongly registered with the admin scope: a person signing in
    // gets `deputy:admin` addressed to deputy, and still may not administer.
    let mut c = client(
        "console",
        deputy::model::ClientKind::App,
        deputy::model::AuthMethod::None,
    );
    c.grant_types = vec![deputy::model::GrantType::AuthorizationCode];
    c.redirect_uris = vec![REDIRECT.to_string()];
    c.scopes = vec!["deputy:admin".into()];
    env.add_client(c).await;
    env.person("alice").await;
    let app = env.app().await;
    let code = sign_in(
        &app,
        &mut Browser::default(),
        "console",
        "alice",
        "&scope=openid+deputy%3Aadmin",
    )
    .await;
    let (s, tokens) = redeem(&app, "console", &code, "").await;
    assert_eq!(s, 200);
    let t = tokens["access_token"].as_str().unwrap();
    assert_eq!(peek(t).1["scope"], "openid deputy:admin");
    assert_eq!(peek(t).1["aud"], ISSUER);
    assert_eq!(
        call(&app, "GET", "/admin/tokens", Some(&format!("Bearer {t}"))).await,
        insufficient()
    );
}

/// The gate reads the headers; `POST /admin/revoke` acts only after its body
/// arrived, which a slow client can delay at will. The action re-checks the
/// caller in its own transaction: a token revoked, or a client removed, in
/// between stops it with 401 invalid_token.
#[actix_web::test]
async fn the_admin_caller_is_checked_again_where_the_action_commits() {
    let env = Env::new();
    let app = env.app().await;
    let token = admin_token(&app, &env).await;
    let caller = deputy::admin::caller::authorize(
        &env.state.own_tokens,
        &env.state.store,
        ISSUER,
        T0,
        Some(deputy::admin::caller::Presented {
            token: &token,
            proof_jkt: None,
        }),
    )
    .await
    .unwrap();
    let check = |caller: deputy::admin::caller::AdminCaller| {
        env.state.store.write(move |c| {
            Ok(deputy::admin::caller::still_authorized(c, &caller, T0)?
                .map_err(|e| (e.status.as_u16(), e.code.as_str())))
        })
    };
    assert_eq!(check(caller.clone()).await.unwrap(), Ok(()));
    // The admin token revoked after the gate let the request in.
    let jti = caller.jti.clone();
    env.state
        .store
        .write(move |c| deputy::store::tokens::revoke_tree(c, &jti, T0, "test"))
        .await
        .unwrap();
    assert_eq!(
        check(caller.clone()).await.unwrap(),
        Err((401, "invalid_token"))
    );
    // A fresh token, then its client removed.
    let token = token_for(
        &app,
        "admin",
        &admin_client_secret_again(&env).await,
        &format!("&scope=deputy%3Aadmin&resource={}", enc(ISSUER)),
    )
    .await;
    let caller = deputy::admin::caller::authorize(
        &env.state.own_tokens,
        &env.state.store,
        ISSUER,
        T0,
        Some(deputy::admin::caller::Presented {
            token: &token,
            proof_jkt: None,
        }),
    )
    .await
    .unwrap();
    env.state
        .store
        .write(|c| deputy::store::clients::remove(c, "admin"))
        .await
        .unwrap();
    assert_eq!(check(caller).await.unwrap(), Err((401, "invalid_token")));
}

/// Register the `admin` client again with a new secret.
async fn admin_client_secret_again(env: &Env) -> String {
    env.state
        .store
        .write(|c| deputy::store::clients::remove(c, "admin"))
        .await
        .unwrap();
    admin_client(env, "admin").await
}
