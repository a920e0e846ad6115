//! `private_key_jwt` client authentication (RFC 7523 §2.2, §3; RFC 8725).

use actix_web::test;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jws::{ES256, HS256};
use serde_json::{json, Value};

use crate::support::*;

const TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

fn body(assertion: &str) -> String {
    format!(
        "grant_type=client_credentials&client_assertion_type={TYPE}&client_assertion={assertion}"
    )
}

async fn post(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
    body: &str,
) -> (u16, Value) {
    json_of(test::call_service(app, form_post("/token", body).to_request()).await).await
}

#[actix_web::test]
async fn valid_assertion_yields_a_token_and_its_jti_is_recorded_in_the_same_step() {
    let env = Env::new();
    let kp = env.jwt_service("svc").await;
    let app = env.app().await;
    let a = assertion(&kp, std_claims("svc", T0, "j1"), json!({}));
    let (status, b) = post(&app, &body(&a)).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(peek(b["access_token"].as_str().unwrap()).1["sub"], "svc");
    assert_eq!(
        env.count("SELECT count(*) FROM used_assertions WHERE jti = 'j1'")
            .await,
        1
    );
    assert_eq!(env.count("SELECT count(*) FROM tokens").await, 1);
    // The issuer identifier is an accepted audience too.
    let mut c = std_claims("svc", T0, "j2");
    c["aud"] = json!(ISSUER);
    assert_eq!(
        post(&app, &body(&assertion(&kp, c, json!({})))).await.0,
        200
    );
}

#[actix_web::test]
async fn replay_is_refused_even_after_a_restart() {
    let dir = temp_dir();
    let a;
    {
        let env = Env::in_dir(dir.clone(), T0);
        let kp = env.jwt_service("svc").await;
        let app = env.app().await;
        a = assertion(&kp, std_claims("svc", T0, "once"), json!({}));
        assert_eq!(post(&app, &body(&a)).await.0, 200);
        let (status, b) = post(&app, &body(&a)).await;
        assert_eq!((status, b["error"].as_str()), (401, Some("invalid_client")));
    }
    let env = Env::in_dir(dir, T0 + 1);
    let app = env.app().await;
    let (status, b) = post(&app, &body(&a)).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (401, Some("invalid_client")),
        "replay after restart"
    );
}

#[actix_web::test]
async fn twenty_parallel_uses_of_one_assertion_give_one_token() {
    let env = Env::new();
    let kp = env.jwt_service("svc").await;
    let app = env.app().await;
    let a = assertion(&kp, std_claims("svc", T0, "race"), json!({}));
    let b = body(&a);
    let futures: Vec<_> = (0..20).map(|_| post(&app, &b)).collect();
    let results = futures_util::future::join_all(futures).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let refused = results
        .iter()
        .filter(|(s, b)| *s == 401 && b["error"] == "invalid_client")
        .count();
    assert_eq!((ok, refused), (1, 19), "{results:?}");
    assert_eq!(env.count("SELECT count(*) FROM tokens").await, 1);
}

#[actix_web::test]
async fn claim_rules_are_enforced() {
    let env = Env::new();
    let kp = env.jwt_service("svc").await;
    let app = env.app().await;
    let skew = env.state.settings.clock_skew;
    let max = env.state.settings.assertion_max_age;
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "aud lists two audiences (RFC 7523 §3 item 3, rfc7523bis)",
            Box::new(|c| c["aud"] = json!([format!("{ISSUER}/token"), ISSUER])),
        ),
        (
            "aud elsewhere",
            Box::new(|c| c["aud"] = json!("https://other.example/token")),
        ),
        (
            "iss != sub (§3 items 1-2)",
            Box::new(|c| c["sub"] = json!("someone-else")),
        ),
        (
            "no exp (§3 item 4)",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "expired beyond skew",
            Box::new(move |c| c["exp"] = json!(T0 - skew - 1)),
        ),
        (
            "exp too far ahead",
            Box::new(move |c| c["exp"] = json!(T0 + max + skew + 1)),
        ),
        (
            "iat in the future (§3 item 6)",
            Box::new(move |c| c["iat"] = json!(T0 + skew + 5)),
        ),
        (
            "nbf in the future (§3 item 5)",
            Box::new(move |c| c["nbf"] = json!(T0 + skew + 5)),
        ),
        (
            "no jti (§3 item 7)",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
        ("exp not a number", Box::new(|c| c["exp"] = json!("soon"))),
    ];
    for (i, (name, mutate)) in cases.iter().enumerate() {
        let mut c = std_claims("svc", T0, &format!("j{i}"));
        mutate(&mut c);
        let (status, b) = post(&app, &body(&assertion(&kp, c, json!({})))).await;
        assert_eq!(
            (status, b["error"].as_str()),
            (401, Some("invalid_client")),
            "{name}"
        );
    }
    // Within the skew, an expired-by-a-little assertion still passes.
    let mut c = std_claims("svc", T0, "in-skew");
    c["exp"] = json!(T0 - skew + 1);
    assert_eq!(
        post(&app, &body(&assertion(&kp, c, json!({})))).await.0,
        200
    );
    // client_id form parameter must match.
    let a = assertion(&kp, std_claims("svc", T0, "cid"), json!({}));
    let (status, _) = post(&app, &format!("{}&client_id=other", body(&a))).await;
    assert_eq!(status, 401);
    // Wrong assertion type.
    let a = assertion(&kp, std_claims("svc", T0, "typ"), json!({}));
    let b = format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aexample&client_assertion={a}"
    );
    assert_eq!(post(&app, &b).await.0, 401);
    assert_eq!(env.count("SELECT count(*) FROM tokens").await, 1);
}

#[actix_web::test]
async fn moving_time_expires_an_assertion() {
    let env = Env::new();
    let kp = env.jwt_service("svc").await;
    let app = env.app().await;
    let a = assertion(&kp, std_claims("svc", T0, "late"), json!({}));
    env.clock.advance(60 + env.state.settings.clock_skew + 1);
    assert_eq!(post(&app, &body(&a)).await.0, 401);
}

fn unsigned(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[actix_web::test]
async fn jws_attacks_are_refused() {
    let env = Env::new();
    let kp = env.jwt_service("svc").await;
    let app = env.app().await;
    // alg none (RFC 8725 §3.1).
    let a = unsigned(json!({"alg": "none"}), &std_claims("svc", T0, "none"));
    assert_eq!(post(&app, &body(&a)).await.0, 401, "alg none");
    // HMAC with the public key as the secret (algorithm confusion, RFC 8725 §2.1).
    let public_jwk = kp.to_jwk_public_key().to_string();
    let signer = HS256.signer_from_bytes(public_jwk.as_bytes()).unwrap();
    let a = deputy::token::jws::encode(
        &json!({"alg": "HS256", "kid": "k1"}),
        &std_claims("svc", T0, "hs"),
        &signer,
    )
    .unwrap();
    assert_eq!(post(&app, &body(&a)).await.0, 401, "HS256 with public key");
    // An attacker key embedded in a `jwk` header is never trusted.
    let attacker = ES256.generate_key_pair().unwrap();
    let embedded: Value = serde_json::to_value(attacker.to_jwk_public_key().as_ref()).unwrap();
    let a = assertion(
        &attacker,
        std_claims("svc", T0, "jwk"),
        json!({"jwk": embedded}),
    );
    assert_eq!(post(&app, &body(&a)).await.0, 401, "jwk header");
    // jku / x5u are never fetched: the attacker-signed assertion fails.
    let a = assertion(
        &attacker,
        std_claims("svc", T0, "jku"),
        json!({"jku": "http://127.0.0.1:9/jwks", "x5u": "http://127.0.0.1:9/x"}),
    );
    assert_eq!(post(&app, &body(&a)).await.0, 401, "jku header");
    // Unknown kid.
    let a = assertion(
        &kp,
        std_claims("svc", T0, "kid"),
        json!({"kid": "../../etc/passwd' OR 1=1"}),
    );
    assert_eq!(post(&app, &body(&a)).await.0, 401, "unknown kid");
    // crit (RFC 7515 §4.1.11).
    let a = assertion(
        &kp,
        std_claims("svc", T0, "crit"),
        json!({"crit": ["exp"], "exp": 1}),
    );
    assert_eq!(post(&app, &body(&a)).await.0, 401, "crit");
    // Tampered payload.
    let good = assertion(&kp, std_claims("svc", T0, "tamper"), json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = std_claims("svc", T0, "tamper");
    c["sub"] = json!("svc");
    c["exp"] = json!(T0 + 100);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert_eq!(post(&app, &body(&forged)).await.0, 401, "tampered");
    // The valid one still works: none of the refusals spent it.
    assert_eq!(post(&app, &body(&good)).await.0, 200);
    assert_eq!(env.count("SELECT count(*) FROM tokens").await, 1);
}

#[actix_web::test]
async fn a_secret_client_cannot_authenticate_with_an_assertion() {
    let env = Env::new();
    env.secret_service("sec", deputy::model::AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let kp = ES256.generate_key_pair().unwrap();
    let a = assertion(&kp, std_claims("sec", T0, "x"), json!({}));
    assert_eq!(post(&app, &body(&a)).await.0, 401);
}

/// RFC 7523 §3 item 7: an assertion is spent whatever the request's outcome.
/// One refused with 429 (over the per-client limit) cannot be replayed later.
#[actix_web::test]
async fn an_assertion_refused_with_429_is_spent() {
    let dir = temp_dir();
    let mut settings = settings_in(&dir);
    settings.rate_limit_client = 1;
    let env = Env::with_settings(dir, settings, T0);
    let kp = env.jwt_service("svc").await;
    let app = env.app().await;
    let post = |jti: &str| {
        let a = assertion(&kp, std_claims("svc", T0, jti), json!({}));
        form_post(
            "/token",
            &format!(
                "grant_type=client_credentials&client_assertion_type={}&client_assertion={a}",
                enc("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            ),
        )
        .to_request()
    };
    let (s, _) = json_of(test::call_service(&app, post("first")).await).await;
    assert_eq!(s, 200);
    let (s, b) = json_of(test::call_service(&app, post("second")).await).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (429, Some("temporarily_unavailable"))
    );
    env.clock.advance(1);
    let (s, b) = json_of(test::call_service(&app, post("second")).await).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("invalid_client")),
        "replay of the 429'd assertion"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM used_assertions WHERE jti = 'second'")
            .await,
        1
    );
}

/// RFC 7523 §3 item 7: an assertion whose request met a busy store (503) is
/// still recorded as used once the store answers, so it cannot be replayed.
#[actix_web::test]
async fn an_assertion_whose_request_met_a_busy_store_is_spent() {
    let env = Env::new();
    let kp = env.jwt_service("svc").await;
    let app = env.app().await;
    let a = assertion(&kp, std_claims("svc", T0, "busy-1"), json!({}));
    let holder = env.hold_write_lock(std::time::Duration::from_millis(6500));
    let (s, b) = post(&app, &body(&a)).await;
    holder.join().unwrap();
    assert_eq!(
        (s, b["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{b}"
    );
    let (s, b) = post(&app, &body(&a)).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("invalid_client")),
        "replay after a 503"
    );
}

/// A request job that writes and then rolls back: its writes are gone, the
/// assertion is still spent (RFC 7523 §3 item 7), and the job's refusal is
/// the answer; a replay of the assertion then never reaches its job.
#[actix_web::test]
async fn a_job_that_rolls_back_undoes_its_writes_but_the_assertion_stays_spent() {
    use deputy::client_auth::{conclude, AuthenticatedClient, PendingAssertion};
    use deputy::error::OAuthError;
    use deputy::store::Outcome;
    let env = Env::new();
    let svc = client(
        "svc",
        deputy::model::ClientKind::Service,
        deputy::model::AuthMethod::PrivateKeyJwt,
    );
    env.add_client(svc.clone()).await;
    let auth = AuthenticatedClient {
        client: svc,
        method: deputy::model::AuthMethod::PrivateKeyJwt,
        assertion: Some(PendingAssertion {
            jti: "once".into(),
            expires_at: T0 + 60,
        }),
    };
    let event = deputy::audit::AuditEvent::new(T0, "job_wrote", deputy::audit::Mode::Service);
    let refused = conclude::<()>(
        &env.state.store,
        &auth,
        Box::new(move |c| {
            deputy::store::audit::insert(c, &event)?;
            Ok(Outcome::Rollback(OAuthError::invalid_grant(
                "the job refused",
            )))
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code.as_str(), "invalid_grant");
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE event = 'job_wrote'")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM used_assertions WHERE jti = 'once'")
            .await,
        1
    );
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let replay = conclude::<()>(
        &env.state.store,
        &auth,
        Box::new(move |_| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(Outcome::Commit(()))
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(replay.code.as_str(), "invalid_client");
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
}
