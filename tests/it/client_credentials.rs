//! The client credentials grant (RFC 6749 §4.4) with secrets.

use actix_web::test;
use base64::Engine;
use deputy::model::{AuthMethod, ClientKind};

use crate::support::*;

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

#[actix_web::test]
async fn basic_secret_yields_a_recorded_rfc9068_token() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let req = form_post(
        "/token",
        "grant_type=client_credentials&scope=read&resource=https%3A%2F%2Fapi.example",
    )
    .insert_header(("Authorization", basic("svc", &secret)))
    .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "read");
    assert!(
        body.get("refresh_token").is_none(),
        "RFC 6749 §4.4.3: no refresh token"
    );
    let (header, claims) = peek(body["access_token"].as_str().unwrap());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "svc");
    assert_eq!(claims["client_id"], "svc");
    assert_eq!(claims["aud"], "https://api.example");
    assert_eq!(claims["iat"], T0);
    assert_eq!(claims["exp"], T0 + 300);
    assert!(claims["exp"].is_i64());
    let jti = claims["jti"].as_str().unwrap().to_string();
    let record = env.token_record(&jti).await;
    assert_eq!(record.client_kind, "service");
    assert_eq!(record.subject_kind, deputy::model::SubjectKind::Service);
    assert_eq!(record.audience, "https://api.example");
    assert_eq!(
        env.count(
            "SELECT count(*) FROM audit_events WHERE event = 'token_issued' AND mode = 'service'"
        )
        .await,
        1
    );
}

#[actix_web::test]
async fn post_secret_and_defaults() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretPost)
        .await;
    let app = env.app().await;
    let body = format!(
        "grant_type=client_credentials&client_id=svc&client_secret={}",
        enc(&secret)
    );
    let (status, json) =
        json_of(test::call_service(&app, form_post("/token", &body).to_request()).await).await;
    assert_eq!(status, 200);
    // Omitted scope: the client's default set; omitted target: its first audience.
    assert_eq!(json["scope"], "read write");
    assert_eq!(
        peek(json["access_token"].as_str().unwrap()).1["aud"],
        "https://api.example"
    );
}

#[actix_web::test]
async fn wrong_secret_unknown_client_and_wrong_method_are_the_same_401() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    for auth in [basic("svc", "wrong"), basic("nobody", &secret)] {
        let req = form_post("/token", "grant_type=client_credentials")
            .insert_header(("Authorization", auth))
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(
            resp.headers().get("www-authenticate").unwrap(),
            "Basic realm=\"deputy\""
        );
        let (status, body) = json_of(resp).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
        assert_eq!(body["error_description"], "client authentication failed");
    }
    // A basic client using client_secret_post is refused.
    let body = format!(
        "grant_type=client_credentials&client_id=svc&client_secret={}",
        enc(&secret)
    );
    let (status, json) =
        json_of(test::call_service(&app, form_post("/token", &body).to_request()).await).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[actix_web::test]
async fn two_methods_at_once_is_invalid_request() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let req = form_post(
        "/token",
        &format!(
            "grant_type=client_credentials&client_secret={}",
            enc(&secret)
        ),
    )
    .insert_header(("Authorization", basic("svc", &secret)))
    .to_request();
    let (status, body) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[actix_web::test]
async fn scope_and_target_are_checked() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let cases = [
        ("scope=read+admin", 400, "invalid_scope"),
        ("resource=https%3A%2F%2Fevil.example", 400, "invalid_target"),
        ("audience=https%3A%2F%2Fevil.example", 400, "invalid_target"),
        (
            "resource=https%3A%2F%2Fapi.example&audience=https%3A%2F%2Fother.example",
            400,
            "invalid_target",
        ),
        ("resource=not-a-uri", 400, "invalid_target"),
    ];
    for (extra, status, error) in cases {
        let req = form_post("/token", &format!("grant_type=client_credentials&{extra}"))
            .insert_header(("Authorization", basic("svc", &secret)))
            .to_request();
        let (s, body) = json_of(test::call_service(&app, req).await).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (status, Some(error)),
            "{extra}"
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM tokens").await,
        0,
        "refusals issue nothing"
    );
}

#[actix_web::test]
async fn client_not_registered_for_the_grant_is_unauthorized_client() {
    let env = Env::new();
    let secret = deputy::secret::new_secret();
    let mut c = client("app1", ClientKind::App, AuthMethod::ClientSecretBasic);
    c.grant_types = vec![deputy::model::GrantType::AuthorizationCode];
    c.secret_hash = Some(
        deputy::secret::hash_secret(&secret, deputy::secret::Argon2Profile::GeneratedSecret)
            .unwrap(),
    );
    env.add_client(c).await;
    let app = env.app().await;
    let req = form_post("/token", "grant_type=client_credentials")
        .insert_header(("Authorization", basic("app1", &secret)))
        .to_request();
    let (status, body) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
}

#[actix_web::test]
async fn public_clients_cannot_use_client_credentials() {
    let env = Env::new();
    let mut c = client("spa", ClientKind::App, AuthMethod::None);
    c.grant_types = vec![deputy::model::GrantType::ClientCredentials];
    env.add_client(c).await;
    let app = env.app().await;
    let (status, body) = json_of(
        test::call_service(
            &app,
            form_post("/token", "grant_type=client_credentials&client_id=spa").to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
}

#[actix_web::test]
async fn token_endpoint_rate_limits_answer_429_with_retry_after() {
    let dir = temp_dir();
    let mut settings = settings_in(&dir);
    settings.rate_limit_client = 2;
    let env = Env::with_settings(dir, settings, T0);
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let call = || {
        form_post("/token", "grant_type=client_credentials")
            .insert_header(("Authorization", basic("svc", &secret)))
            .to_request()
    };
    assert_eq!(
        test::call_service(&app, call()).await.status().as_u16(),
        200
    );
    assert_eq!(
        test::call_service(&app, call()).await.status().as_u16(),
        200
    );
    let resp = test::call_service(&app, call()).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    // The next second the client may go on.
    env.clock.advance(1);
    assert_eq!(
        test::call_service(&app, call()).await.status().as_u16(),
        200
    );
}
