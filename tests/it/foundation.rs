//! Discovery, JWKS, health, request hygiene, store atomicity and restarts.

use actix_web::test;
use serde_json::Value;

use crate::support::*;

#[actix_web::test]
async fn discovery_lists_what_is_implemented() {
    let env = Env::new();
    let app = env.app().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let resp = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        let (status, body) = json_of(resp).await;
        assert_eq!(status, 200);
        assert_eq!(body["issuer"], ISSUER);
        assert_eq!(body["token_endpoint"], format!("{ISSUER}/token"));
        assert_eq!(body["jwks_uri"], format!("{ISSUER}/jwks"));
        let grants: Vec<&str> = body["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for g in &grants {
            assert!(deputy::grant::is_implemented(
                deputy::model::GrantType::parse(g).unwrap()
            ));
        }
        assert!(grants.contains(&"client_credentials"));
        if path.contains("openid") {
            assert_eq!(body["userinfo_endpoint"], format!("{ISSUER}/userinfo"));
            assert_eq!(body["end_session_endpoint"], format!("{ISSUER}/logout"));
            assert_eq!(
                body["id_token_signing_alg_values_supported"],
                serde_json::json!(["ES256", "RS256"])
            );
        }
        assert_eq!(
            body["authorization_endpoint"],
            format!("{ISSUER}/authorize")
        );
        assert_eq!(
            body["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        let algs = body["token_endpoint_auth_signing_alg_values_supported"]
            .as_array()
            .unwrap();
        assert!(!algs
            .iter()
            .any(|a| a == "none" || a.as_str().unwrap().starts_with("HS")));
    }
}

#[actix_web::test]
async fn jwks_publishes_public_keys_with_cache_control() {
    let env = Env::new();
    let app = env.app().await;
    let resp = test::call_service(&app, test::TestRequest::get().uri("/jwks").to_request()).await;
    assert_eq!(
        resp.headers().get("cache-control").unwrap(),
        "public, max-age=300"
    );
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200);
    let keys = body["keys"].as_array().unwrap();
    // One generation: a P-256 key, and the RSA key for RS256 ID tokens.
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[1]["kty"], "RSA");
    assert_eq!(keys[1]["alg"], "RS256");
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                k.get(private).is_none(),
                "private part must never be published"
            );
        }
    }
}

#[actix_web::test]
async fn rotated_key_is_published_at_once_and_signs_after_prepublication() {
    let env = Env::new();
    let app = env.app().await;
    let old_kid = env
        .state
        .keys
        .ring()
        .signing_key(T0)
        .unwrap()
        .meta
        .kid
        .clone();
    let new = env.rotate_key(T0, T0 + 900).await;
    assert!(env.state.keys.reload_if_changed().unwrap());
    let resp = test::call_service(&app, test::TestRequest::get().uri("/jwks").to_request()).await;
    let (_, body) = json_of(resp).await;
    let kids: Vec<&str> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids.len(),
        4,
        "two generations, each a P-256 and an RSA key"
    );
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new.ec.kid.as_str()));
    assert!(kids.contains(&new.rsa.kid.as_str()));
    assert_eq!(
        env.state
            .keys
            .ring()
            .signing_key(T0 + 899)
            .unwrap()
            .meta
            .kid,
        old_kid
    );
    assert_eq!(
        env.state
            .keys
            .ring()
            .signing_key(T0 + 900)
            .unwrap()
            .meta
            .kid,
        new.ec.kid
    );
}

#[actix_web::test]
async fn health_and_readiness() {
    let env = Env::new();
    let app = env.app().await;
    for path in ["/healthz", "/readyz"] {
        let resp = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
}

#[actix_web::test]
async fn readiness_fails_when_the_database_file_is_moved_deleted_or_replaced() {
    if Env::on_postgres() {
        // A SQLite file's fate; PostgreSQL's readiness (a database that stops
        // answering) is the fault test in the conformance suite.
        return;
    }
    let env = Env::new();
    let app = env.app().await;
    let db = env.state.settings.database.clone();
    let moved = db.with_extension("moved");
    let ready = |app| async move {
        let req = test::TestRequest::get().uri("/readyz").to_request();
        let (status, body) = json_of(test::call_service(app, req).await).await;
        (status, body["status"].as_str().unwrap().to_string())
    };
    let up = (200, "ready".to_string());
    let down = (503, "unavailable".to_string());
    assert_eq!(ready(&app).await, up);
    // Renamed away: the connections still answer, but from a file no one
    // will open again; every later write would be lost.
    std::fs::rename(&db, &moved).unwrap();
    assert_eq!(ready(&app).await, down);
    std::fs::rename(&moved, &db).unwrap();
    assert_eq!(ready(&app).await, up);
    // Replaced by a copy: same path, another file.
    std::fs::copy(&db, &moved).unwrap();
    std::fs::rename(&moved, &db).unwrap();
    assert_eq!(ready(&app).await, down);
    // Deleted.
    std::fs::remove_file(&db).unwrap();
    assert_eq!(ready(&app).await, down);
}

#[actix_web::test]
async fn request_hygiene_at_the_token_endpoint() {
    let env = Env::new();
    let app = env.app().await;
    // Wrong method: 405 naming the methods the resource has (RFC 9110 §15.5.6).
    for (method, path, allow) in [
        ("GET", "/token", "POST"),
        ("PUT", "/introspect", "POST"),
        ("GET", "/revoke", "POST"),
        ("POST", "/jwks", "GET, HEAD"),
        ("DELETE", "/.well-known/openid-configuration", "GET, HEAD"),
        ("PUT", "/authorize", "GET, POST"),
        ("PUT", "/login", "GET, POST"),
        ("GET", "/account/withdraw", "POST"),
        ("POST", "/account", "GET, HEAD"),
    ] {
        let req = test::TestRequest::default()
            .method(actix_web::http::Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        assert_eq!(
            resp.headers().get("allow").unwrap(),
            allow,
            "{method} {path}"
        );
    }
    // Wrong content type.
    let req = test::TestRequest::post()
        .uri("/token")
        .insert_header(("Content-Type", "application/json"))
        .set_payload(r#"{"grant_type":"client_credentials"}"#)
        .to_request();
    let (status, body) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Repeated parameter (RFC 6749 §3.1).
    let req = form_post(
        "/token",
        "grant_type=client_credentials&grant_type=client_credentials",
    )
    .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
    let (status, body) = json_of(resp).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Too large: 413 before parsing.
    let big = format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(70 * 1024)
    );
    let resp = test::call_service(&app, form_post("/token", &big).to_request()).await;
    assert_eq!(resp.status().as_u16(), 413);
    // Invalid UTF-8.
    let resp =
        test::call_service(&app, form_post("/token", "grant_type=%FF%FE").to_request()).await;
    assert_eq!(resp.status().as_u16(), 400);
    // Missing and unknown grant types.
    let (status, body) =
        json_of(test::call_service(&app, form_post("/token", "scope=a").to_request()).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = json_of(
        test::call_service(
            &app,
            form_post("/token", "grant_type=password").to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    // Unknown path.
    let resp = test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
    assert_eq!(resp.status().as_u16(), 404);
}

#[actix_web::test]
async fn error_description_never_echoes_input() {
    let env = Env::new();
    let app = env.app().await;
    let evil = "grant_type=%3Cscript%3E%22evil%22";
    let (_, body) =
        json_of(test::call_service(&app, form_post("/token", evil).to_request()).await).await;
    let desc = body["error_description"].as_str().unwrap();
    assert!(!desc.contains("script") && !desc.contains('"'), "{desc}");
}

#[actix_web::test]
async fn twenty_concurrent_consumers_of_one_jti_give_exactly_one_success() {
    let env = Env::new();
    let mut attempts = Vec::new();
    for _ in 0..20 {
        let store = env.state.store.clone();
        attempts.push(tokio::spawn(async move {
            store
                .write(|c| {
                    deputy::store::tokens::consume_assertion_jti(c, "svc", "same-jti", T0 + 60)
                })
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for a in attempts {
        if a.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

#[actix_web::test]
async fn a_newer_database_is_refused_at_start() {
    let dir = temp_dir();
    {
        let env = Env::in_dir(dir.clone(), T0);
        env.state
            .store
            .write(|c| {
                c.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)", &[])?;
                Ok(())
            })
            .await
            .unwrap();
    }
    let err = deputy::app::AppState::open(
        settings_in(&dir),
        std::sync::Arc::new(deputy::clock::ManualClock::new(T0)),
    )
    .err()
    .unwrap();
    assert!(err.contains("newer than this deputy supports"), "{err}");
}

#[actix_web::test]
async fn store_failure_is_a_5xx_never_a_success() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", deputy::model::AuthMethod::ClientSecretPost)
        .await;
    // Break the store under the server: the token table disappears.
    env.state
        .store
        .write(|c| {
            c.batch("DROP TABLE tokens")?;
            Ok(())
        })
        .await
        .unwrap();
    let app = env.app().await;
    let body = format!(
        "grant_type=client_credentials&client_id=svc&client_secret={}",
        enc(&secret)
    );
    let (status, json) =
        json_of(test::call_service(&app, form_post("/token", &body).to_request()).await).await;
    assert_eq!(status, 500);
    assert_eq!(json["error"], "server_error");
    assert!(json.get("access_token").is_none());
    let _: Value = json;
}
