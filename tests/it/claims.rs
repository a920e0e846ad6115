//! What a relying party learns about the person: a verified email set by the
//! operator, profile/email claims in the ID token per client (OIDC Core
//! §5.4) and the `claims` request parameter (§5.5).

use actix_web::test;
use serde_json::{json, Value};

use crate::people::*;
use crate::support::*;

fn run_cli(env: &Env, args: &[&str]) -> (bool, Value, String) {
    let out = env.cli().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn userinfo<S>(app: &S, access_token: &str) -> Value
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let (s, v) = json_of(
        test::call_service(
            app,
            test::TestRequest::get()
                .uri("/userinfo")
                .insert_header(("Authorization", format!("Bearer {access_token}")))
                .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// The ID token's claims after a sign-in of alice with `extra` parameters.
async fn id_token_after_sign_in(env: &Env, client_id: &str, extra: &str) -> (Value, Value) {
    let app = env.app().await;
    let code = sign_in(&app, &mut Browser::default(), client_id, "alice", extra).await;
    let (s, tokens) = redeem(&app, client_id, &code, "").await;
    assert_eq!(s, 200, "{tokens}");
    (peek(tokens["id_token"].as_str().unwrap()).1, tokens)
}

/// The claims deputy may release about a person, for comparisons.
fn person_claims(claims: &Value) -> Value {
    let names = ["name", "preferred_username", "email", "email_verified"];
    Value::Object(
        claims
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

#[actix_web::test]
async fn user_update_sets_a_verified_email_seen_at_userinfo_and_audited() {
    let env = Env::new();
    env.app_client("web").await;
    let sub = env.person("alice").await;
    let (ok, user, err) = run_cli(
        &env,
        &[
            "user",
            "update",
            "alice",
            "--email",
            "alice@corp.example",
            "--email-verified",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(user["email"], "alice@corp.example");
    assert_eq!(user["email_verified"], true);
    let app = env.app().await;
    let code = sign_in(&app, &mut Browser::default(), "web", "alice", "").await;
    let (_, tokens) = redeem(&app, "web", &code, "").await;
    let info = userinfo(&app, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(
        info,
        json!({"sub": sub, "name": "alice Example", "preferred_username": "alice",
               "email": "alice@corp.example", "email_verified": true})
    );
    // The trail says what changed, never the new address.
    let detail: String = env
        .state
        .store
        .read(|c| {
            c.scalar(
                "SELECT detail FROM audit_events WHERE event = 'person_updated'",
                &[],
            )
        })
        .await
        .unwrap();
    let detail: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(
        detail,
        json!({"changed": ["email", "email_verified"], "email_verified": true})
    );
    assert!(!detail.to_string().contains("corp.example"));

    // A new address without --email-verified is unverified again.
    let (ok, user, err) = run_cli(
        &env,
        &["user", "update", "alice", "--email", "a2@corp.example"],
    );
    assert!(ok, "{err}");
    assert_eq!(user["email_verified"], false);
    let info = userinfo(&app, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(info["email_verified"], false);
    assert_eq!(info["email"], "a2@corp.example");
}

#[actix_web::test]
async fn user_update_refuses_what_it_cannot_do() {
    let env = Env::new();
    env.person("alice").await;
    let (ok, _, err) = run_cli(&env, &["user", "update", "bob", "--name", "Bob"]);
    assert!(!ok);
    assert!(err.contains("no user `bob`"), "{err}");
    let (ok, _, err) = run_cli(&env, &["user", "update", "alice"]);
    assert!(!ok);
    assert!(err.contains("nothing to change"), "{err}");
    let (ok, _, err) = run_cli(
        &env,
        &["user", "update", "alice", "--email", "not-an-address"],
    );
    assert!(!ok);
    assert!(err.contains("is not an email address"), "{err}");
    let (ok, _, _) = run_cli(
        &env,
        &[
            "user",
            "update",
            "alice",
            "--email-verified",
            "--email-unverified",
        ],
    );
    assert!(!ok);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE event = 'person_updated'")
            .await,
        0,
        "a refused update changes nothing"
    );
}

#[actix_web::test]
async fn id_token_carries_scope_claims_only_for_clients_registered_for_them() {
    let env = Env::new();
    env.app_client("plain").await;
    let mut c = client(
        "rich",
        deputy::model::ClientKind::App,
        deputy::model::AuthMethod::None,
    );
    c.grant_types = vec![
        deputy::model::GrantType::AuthorizationCode,
        deputy::model::GrantType::RefreshToken,
    ];
    c.redirect_uris = vec![REDIRECT.to_string()];
    c.id_token_claims = true;
    env.add_client(c).await;
    let sub = env.person("alice").await;

    let (plain, _) = id_token_after_sign_in(&env, "plain", "").await;
    assert_eq!(plain["sub"], sub);
    assert_eq!(person_claims(&plain), json!({}));

    // Only the claims of the granted scopes: email but not profile here.
    let (rich, tokens) = id_token_after_sign_in(&env, "rich", "&scope=openid+email").await;
    assert_eq!(
        person_claims(&rich),
        json!({"email": "alice@example.com", "email_verified": false})
    );
    // A refreshed ID token carries them too, as the person is now.
    env.state
        .store
        .write(|c| {
            c.execute(
                "UPDATE users SET email_verified = ?1 WHERE username = 'alice'",
                &[true.into()],
            )
        })
        .await
        .unwrap();
    let app = env.app().await;
    let (s, refreshed) = json_of(
        test::call_service(
            &app,
            form_post(
                "/token",
                &format!(
                    "grant_type=refresh_token&client_id=rich&refresh_token={}",
                    enc(tokens["refresh_token"].as_str().unwrap())
                ),
            )
            .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{refreshed}");
    let claims = peek(refreshed["id_token"].as_str().unwrap()).1;
    assert_eq!(
        person_claims(&claims),
        json!({"email": "alice@example.com", "email_verified": true})
    );
}

#[actix_web::test]
async fn claims_parameter_puts_covered_claims_in_the_id_token() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    // email and name asked for; only email's scope granted.
    let claims = enc(r#"{"id_token":{"email":{"essential":true},"name":null,"acr":null}}"#);
    let (id, _) =
        id_token_after_sign_in(&env, "web", &format!("&scope=openid+email&claims={claims}")).await;
    assert_eq!(person_claims(&id), json!({"email": "alice@example.com"}));
}

#[actix_web::test]
async fn malformed_claims_parameter_goes_back_as_invalid_request() {
    let env = Env::new();
    env.app_client("web").await;
    let app = env.app().await;
    for bad in [r#"{"id_token":[]}"#, "nope", r#"{"userinfo":{"email":1}}"#] {
        let resp = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&authorize_query("web", &format!("&claims={}", enc(bad))))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 303, "{bad}");
        let loc = location(&resp);
        assert_eq!(
            query(&loc, "error").as_deref(),
            Some("invalid_request"),
            "{bad}"
        );
        assert_eq!(query(&loc, "state").as_deref(), Some("st-1"));
    }
}

/// OIDC Core §5.5.1: with a `sub` value asked for, no positive answer for
/// another person, even one with an active session.
#[actix_web::test]
async fn a_requested_sub_value_allows_only_that_person() {
    let env = Env::new();
    env.app_client("web").await;
    let alice = env.person("alice").await;
    env.person("bob").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    // alice signs in (session) without a claims request.
    sign_in(&app, &mut browser, "web", "alice", "").await;
    let for_bob = enc(r#"{"id_token":{"sub":{"value":"sub-bob"}}}"#);
    // prompt=none: alice's session does not answer for bob.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query(
                "web",
                &format!("&prompt=none&claims={for_bob}"),
            ))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        query(&location(&resp), "error").as_deref(),
        Some("login_required")
    );
    assert!(query(&location(&resp), "code").is_none());
    // A client the person never consented to learns nothing from a sub
    // value: consent_required, whoever it names (no identity oracle).
    env.app_client("other").await;
    for sub in ["sub-bob", alice.as_str()] {
        let ask = enc(&format!(r#"{{"id_token":{{"sub":{{"value":"{sub}"}}}}}}"#));
        let resp = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&authorize_query(
                    "other",
                    &format!("&prompt=none&claims={ask}"),
                ))
                .insert_header(("Cookie", browser.header()))
                .to_request(),
        )
        .await;
        assert_eq!(
            query(&location(&resp), "error").as_deref(),
            Some("consent_required"),
            "{sub}"
        );
    }
    // Without prompt=none the login page is shown; alice logging in again
    // still gets no code.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", &format!("&claims={for_bob}")))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    browser.absorb(&resp);
    let html = body_text(resp).await;
    assert!(html.contains("name=\"password\""), "the login page: {html}");
    let resp = test::call_service(
        &app,
        form_post(
            "/login",
            &format!(
                "interaction={}&csrf={}&username=alice&password={}",
                hidden(&html, "interaction"),
                hidden(&html, "csrf"),
                enc(PASSWORD)
            ),
        )
        .insert_header(("Cookie", browser.header()))
        .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    let loc = location(&resp);
    assert_eq!(query(&loc, "error").as_deref(), Some("login_required"));
    assert!(query(&loc, "code").is_none());
    // The named person herself gets her code.
    let for_alice = enc(&format!(
        r#"{{"id_token":{{"sub":{{"value":"{alice}"}}}}}}"#
    ));
    let code = sign_in(
        &app,
        &mut browser,
        "web",
        "alice",
        &format!("&claims={for_alice}"),
    )
    .await;
    let (s, tokens) = redeem(&app, "web", &code, "").await;
    assert_eq!(s, 200);
    assert_eq!(peek(tokens["id_token"].as_str().unwrap()).1["sub"], alice);
}
