//! Token introspection (RFC 7662): who may see what, and what is inactive.

use actix_web::test;
use base64::Engine;
use deputy::model::{AuthMethod, ClientKind, GrantType, TokenKind};
use josekit::jws::ES256;
use serde_json::{json, Value};

use super::{basic, introspect, jti_of, mint, record, token_for};
use crate::support::*;

#[actix_web::test]
async fn the_tokens_own_client_sees_every_member() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "&scope=read").await;
    let req = form_post("/introspect", &format!("token={at}"))
        .insert_header(("Authorization", basic("svc", &secret)))
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "active": true, "scope": "read", "client_id": "svc", "token_type": "Bearer",
            "exp": T0 + 300, "iat": T0, "sub": "svc", "aud": "https://api.example",
            "iss": ISSUER, "jti": jti_of(&at),
        })
    );
}

#[actix_web::test]
async fn delegation_members_act_and_task_are_returned() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let at = mint(&env, "svc", ClientKind::Agent, None).await;
    let app = env.app().await;
    let (status, body) = introspect(&app, "svc", &secret, &format!("token={at}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], "person-1");
    assert_eq!(body["act"], json!({"sub": "svc"}));
    assert_eq!(body["task"], "book a flight");
}

#[actix_web::test]
async fn the_tokens_audience_may_introspect() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let api_secret = env
        .secret_service("api", AuthMethod::ClientSecretPost)
        .await;
    let billing_secret = env
        .secret_service("billing", AuthMethod::ClientSecretBasic)
        .await;
    // The API client is the resource the token is addressed to.
    env.state
        .store
        .write(|c| {
            deputy::store::resources::insert(
                c,
                &deputy::store::resources::Resource {
                    id: "https://api.example".into(),
                    client_id: Some("api".into()),
                    scopes: vec![("read".into(), "Read".into())],
                    created_at: T0,
                },
            )
        })
        .await
        .unwrap();
    let mut c = client("svc2", ClientKind::Service, AuthMethod::ClientSecretBasic);
    c.audiences = vec!["billing".into()];
    let secret2 = deputy::secret::new_secret();
    c.secret_hash = Some(
        deputy::secret::hash_secret(&secret2, deputy::secret::Argon2Profile::GeneratedSecret)
            .unwrap(),
    );
    env.add_client(c).await;
    let app = env.app().await;

    let at = token_for(&app, "svc", &secret, "").await;
    let body = format!(
        "token={at}&client_id=api&client_secret={}",
        enc(&api_secret)
    );
    let (status, json) =
        json_of(test::call_service(&app, form_post("/introspect", &body).to_request()).await).await;
    assert_eq!(status, 200);
    assert_eq!(json["active"], true);
    assert_eq!(json["client_id"], "svc");
    assert_eq!(json["aud"], "https://api.example");

    // The audience is the caller's client id itself.
    let at2 = token_for(&app, "svc2", &secret2, "&audience=billing").await;
    let (status, json) =
        introspect(&app, "billing", &billing_secret, &format!("token={at2}")).await;
    assert_eq!(status, 200);
    assert_eq!(json["active"], true);
    assert_eq!(json["aud"], "billing");
    // ...and billing may not see the token addressed to the API.
    let (_, json) = introspect(&app, "billing", &billing_secret, &format!("token={at}")).await;
    assert_eq!(json, json!({"active": false}));
}

#[actix_web::test]
async fn a_third_client_learns_nothing() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let other = env
        .secret_service("other", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    let (status, body) = introspect(&app, "other", &other, &format!("token={at}")).await;
    assert_eq!((status, body), (200, json!({"active": false})));
}

#[actix_web::test]
async fn tokens_that_are_not_live_access_tokens_of_ours_are_inactive() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    let (header, claims) = peek(&at);
    let ring = env.state.keys.ring();
    let sign = |typ: &str, claims: &Value| deputy::token::sign(&ring, T0, typ, claims).unwrap();

    let mut foreign_iss = claims.clone();
    foreign_iss["iss"] = json!("https://evil.example");
    let attacker = ES256.generate_key_pair().unwrap();
    let attacker_signer = ES256
        .signer_from_der(attacker.to_der_private_key())
        .unwrap();
    let forged = deputy::token::jws::encode(&header, &claims, &attacker_signer).unwrap();
    let parts: Vec<&str> = at.split('.').collect();
    let mut widened = claims.clone();
    widened["scope"] = json!("read write admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(widened.to_string()),
        parts[2]
    );
    let mut unknown = claims.clone();
    unknown["jti"] = json!("never-issued");
    // A record of another kind behind a well-formed `at+jwt`.
    let mut id_record = record(&env, &jti_of(&at)).await;
    id_record.jti = "id-token-jti".into();
    id_record.kind = TokenKind::Id;
    env.state
        .store
        .write(move |c| deputy::store::tokens::insert(c, &id_record))
        .await
        .unwrap();
    let mut id_kind = claims.clone();
    id_kind["jti"] = json!("id-token-jti");

    let cases = [
        ("garbage", "not-a-token".to_string()),
        ("three dots of nothing", "a.b.c".to_string()),
        ("signed by another key", forged),
        ("tampered payload", tampered),
        ("another issuer", sign("at+jwt", &foreign_iss)),
        ("an ID token (typ JWT)", sign("JWT", &claims)),
        ("unknown jti", sign("at+jwt", &unknown)),
        ("record of kind id", sign("at+jwt", &id_kind)),
    ];
    for (name, token) in cases {
        let (status, body) =
            introspect(&app, "svc", &secret, &format!("token={}", enc(&token))).await;
        assert_eq!((status, body), (200, json!({"active": false})), "{name}");
    }
    // The real one is still active.
    assert_eq!(
        introspect(&app, "svc", &secret, &format!("token={at}"))
            .await
            .1["active"],
        true
    );
}

#[actix_web::test]
async fn an_expired_token_is_inactive() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    env.clock.advance(299);
    assert_eq!(
        introspect(&app, "svc", &secret, &format!("token={at}"))
            .await
            .1["active"],
        true
    );
    env.clock.advance(1);
    let (status, body) = introspect(&app, "svc", &secret, &format!("token={at}")).await;
    assert_eq!((status, body), (200, json!({"active": false})));
}

#[actix_web::test]
async fn a_wrong_hint_still_finds_the_token() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    for hint in ["refresh_token", "access_token", "id_token"] {
        let (status, body) = introspect(
            &app,
            "svc",
            &secret,
            &format!("token={at}&token_type_hint={hint}"),
        )
        .await;
        assert_eq!((status, &body["active"]), (200, &json!(true)), "{hint}");
    }
}

#[actix_web::test]
async fn request_errors_at_introspect() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let mut spa = client("spa", ClientKind::App, AuthMethod::None);
    spa.grant_types = vec![GrantType::AuthorizationCode];
    env.add_client(spa).await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    // RFC 7662 §2.1: token is required.
    let (status, body) = introspect(&app, "svc", &secret, "token_type_hint=access_token").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Unauthenticated and wrongly authenticated callers.
    let (status, body) = json_of(
        test::call_service(
            &app,
            form_post("/introspect", &format!("token={at}")).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = introspect(&app, "svc", "wrong", &format!("token={at}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // A public client has no credential to introspect with.
    let (status, body) = json_of(
        test::call_service(
            &app,
            form_post("/introspect", &format!("token={at}&client_id=spa")).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Wrong method.
    let resp = test::call_service(
        &app,
        test::TestRequest::get().uri("/introspect").to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 405);
}

#[actix_web::test]
async fn a_client_assertion_is_spent_by_introspection() {
    let env = Env::new();
    let kp = env.jwt_service("svc").await;
    let app = env.app().await;
    let a = assertion(&kp, std_claims("svc", T0, "tok"), json!({}));
    let (status, b) = json_of(
        test::call_service(
            &app,
            form_post(
                "/token",
                &format!(
                    "grant_type=client_credentials&client_assertion_type={}&client_assertion={a}",
                    enc(deputy::client_auth::JWT_BEARER_ASSERTION_TYPE)
                ),
            )
            .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{b}");
    let at = b["access_token"].as_str().unwrap().to_string();
    let a = assertion(&kp, std_claims("svc", T0, "intro"), json!({}));
    let body = format!(
        "token={at}&client_assertion_type={}&client_assertion={a}",
        enc(deputy::client_auth::JWT_BEARER_ASSERTION_TYPE)
    );
    let call = || async {
        json_of(test::call_service(&app, form_post("/introspect", &body).to_request()).await).await
    };
    let (status, first) = call().await;
    assert_eq!((status, &first["active"]), (200, &json!(true)));
    let (status, replay) = call().await;
    assert_eq!(
        (status, replay["error"].as_str()),
        (401, Some("invalid_client"))
    );
}
