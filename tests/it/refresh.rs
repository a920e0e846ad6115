//! Refresh-token rotation with reuse detection (RFC 6749 §6, RFC 9700 §4.14.2).

use actix_web::test;
use serde_json::Value;

use crate::people::*;
use crate::support::*;

async fn signed_in(env: &Env) -> Value {
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let code = sign_in(&app, &mut Browser::default(), "web", "alice", "").await;
    let (s, tokens) = redeem(&app, "web", &code, "").await;
    assert_eq!(s, 200);
    tokens
}

async fn refresh<S>(app: &S, client: &str, token: &str, extra: &str) -> (u16, Value)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let body = format!("grant_type=refresh_token&client_id={client}&refresh_token={token}{extra}");
    json_of(test::call_service(app, form_post("/token", &body).to_request()).await).await
}

fn rt(v: &Value) -> String {
    v["refresh_token"].as_str().unwrap().to_string()
}

async fn access_revoked(env: &Env, access_token: &str) -> bool {
    let jti = peek(access_token).1["jti"].as_str().unwrap().to_string();
    env.token_record(&jti).await.revoked_at.is_some()
}

#[actix_web::test]
async fn rotation_issues_a_successor_and_a_new_id_token_with_the_same_identity() {
    let env = Env::new();
    let first = signed_in(&env).await;
    let app = env.app().await;
    env.clock.advance(100);
    let (s, second) = refresh(&app, "web", &rt(&first), "").await;
    assert_eq!(s, 200, "{second}");
    assert_ne!(rt(&second), rt(&first));
    let (_, id1) = peek(first["id_token"].as_str().unwrap());
    let (_, id2) = peek(second["id_token"].as_str().unwrap());
    assert_eq!(id2["sub"], id1["sub"]);
    assert_eq!(id2["iss"], id1["iss"]);
    assert_eq!(id2["auth_time"], id1["auth_time"]);
    assert_eq!(
        peek(second["access_token"].as_str().unwrap()).1["iat"],
        T0 + 100
    );
    // The successor works in turn.
    assert_eq!(refresh(&app, "web", &rt(&second), "").await.0, 200);
    // The consumed token's record says it is spent (the admin views read it).
    let hash = deputy::secret::sha256_b64(rt(&first).as_bytes());
    let rec = env
        .state
        .store
        .read(move |c| {
            let jti: String = c.scalar(
                "SELECT jti FROM refresh_tokens WHERE token_hash = ?1",
                deputy::args![&hash],
            )?;
            deputy::store::tokens::get(c, &jti)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rec.revoked_at, rec.revoked_reason.as_deref()),
        (Some(T0 + 100), Some("rotated"))
    );
    assert!(!rec.is_active(T0 + 100));
}

#[actix_web::test]
async fn reuse_revokes_the_whole_family() {
    let env = Env::new();
    let first = signed_in(&env).await;
    let app = env.app().await;
    let (_, second) = refresh(&app, "web", &rt(&first), "").await;
    env.clock.advance(env.state.settings.refresh_grace + 1);
    let (s, b) = refresh(&app, "web", &rt(&first), "").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    // The new branch dies with it, and so do the access tokens.
    let (s, b) = refresh(&app, "web", &rt(&second), "").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    assert!(access_revoked(&env, first["access_token"].as_str().unwrap()).await);
    assert!(access_revoked(&env, second["access_token"].as_str().unwrap()).await);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE event = 'refresh_reuse_detected'")
            .await,
        1
    );
}

#[actix_web::test]
async fn grace_window_returns_the_same_successor_on_both_sides_of_its_edge() {
    let env = Env::new();
    let first = signed_in(&env).await;
    let app = env.app().await;
    let (_, second) = refresh(&app, "web", &rt(&first), "").await;
    let grace = env.state.settings.refresh_grace;
    env.clock.advance(grace - 1);
    let (s, again) = refresh(&app, "web", &rt(&first), "").await;
    assert_eq!(s, 200, "inside the window: same outcome");
    assert_eq!(
        rt(&again),
        rt(&second),
        "the same successor, not a new branch"
    );
    env.clock.advance(1);
    let (s, _) = refresh(&app, "web", &rt(&first), "").await;
    assert_eq!(s, 400, "at the window's end: reuse");
    assert_eq!(refresh(&app, "web", &rt(&second), "").await.0, 400);
}

#[actix_web::test]
async fn grace_does_not_apply_once_the_successor_was_used() {
    let env = Env::new();
    let first = signed_in(&env).await;
    let app = env.app().await;
    let (_, second) = refresh(&app, "web", &rt(&first), "").await;
    let (s, _) = refresh(&app, "web", &rt(&second), "").await;
    assert_eq!(s, 200);
    let (s, _) = refresh(&app, "web", &rt(&first), "").await;
    assert_eq!(
        s, 400,
        "the old token resurfacing after the successor moved on is theft"
    );
}

#[actix_web::test]
async fn strict_mode_has_no_grace() {
    let dir = temp_dir();
    let mut settings = settings_in(&dir);
    settings.refresh_grace = 0;
    let env = Env::with_settings(dir, settings, T0);
    let first = signed_in(&env).await;
    let app = env.app().await;
    let (_, second) = refresh(&app, "web", &rt(&first), "").await;
    // Same second, same client: still reuse when strict.
    assert_eq!(refresh(&app, "web", &rt(&first), "").await.0, 400);
    assert_eq!(
        refresh(&app, "web", &rt(&second), "").await.0,
        400,
        "family revoked"
    );
}

#[actix_web::test]
async fn a_consumed_token_from_another_client_is_reuse() {
    let env = Env::new();
    let first = signed_in(&env).await;
    env.app_client("other").await;
    let app = env.app().await;
    let (_, second) = refresh(&app, "web", &rt(&first), "").await;
    let (s, b) = refresh(&app, "other", &rt(&first), "").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        refresh(&app, "web", &rt(&second), "").await.0,
        400,
        "the family is revoked"
    );
}

#[actix_web::test]
async fn twenty_parallel_refreshes_leave_one_branch_and_no_500() {
    let env = Env::new();
    let first = signed_in(&env).await;
    let app = env.app().await;
    let token = rt(&first);
    let futures: Vec<_> = (0..20).map(|_| refresh(&app, "web", &token, "")).collect();
    let results = futures_util::future::join_all(futures).await;
    assert!(
        results.iter().all(|(s, _)| *s == 200),
        "within grace every retry gets the same outcome: {results:?}"
    );
    let successors: std::collections::HashSet<String> =
        results.iter().map(|(_, b)| rt(b)).collect();
    assert_eq!(successors.len(), 1, "one branch");
    assert_eq!(
        env.count(
            "SELECT count(*) FROM refresh_tokens WHERE consumed_at IS NULL AND revoked_at IS NULL"
        )
        .await,
        1
    );
}

#[actix_web::test]
async fn reuse_detection_survives_a_restart() {
    let dir = temp_dir();
    let first;
    {
        let env = Env::in_dir(dir.clone(), T0);
        first = signed_in(&env).await;
        let app = env.app().await;
        assert_eq!(refresh(&app, "web", &rt(&first), "").await.0, 200);
    }
    let env = Env::in_dir(dir, T0 + 60);
    let app = env.app().await;
    let (s, b) = refresh(&app, "web", &rt(&first), "").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        env.count("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL")
            .await,
        0
    );
}

#[actix_web::test]
async fn another_client_and_wider_scope_are_refused_narrower_scope_is_fine() {
    let env = Env::new();
    let first = signed_in(&env).await;
    env.app_client("other").await;
    let app = env.app().await;
    let (s, b) = refresh(&app, "other", &rt(&first), "").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    let (s, b) = refresh(&app, "web", &rt(&first), "&scope=openid+notes%3Awrite").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_scope")));
    let (s, narrow) = refresh(&app, "web", &rt(&first), "&scope=openid").await;
    assert_eq!(s, 200);
    assert_eq!(narrow["scope"], "openid");
    // The family keeps the consented scope: the next refresh may ask for it all again.
    let (s, wide) = refresh(&app, "web", &rt(&narrow), "&scope=openid+notes%3Aread").await;
    assert_eq!(s, 200, "{wide}");
}

#[actix_web::test]
async fn families_end_at_their_absolute_lifetime_and_with_the_person() {
    let env = Env::new();
    let first = signed_in(&env).await;
    let app = env.app().await;
    // Keep refreshing within the idle limit until the absolute limit.
    let idle = env.state.settings.refresh_idle_ttl;
    let absolute = env.state.settings.refresh_absolute_ttl;
    let mut token = rt(&first);
    let mut elapsed = 0;
    while elapsed + idle / 2 < absolute {
        env.clock.advance(idle / 2);
        elapsed += idle / 2;
        let (s, b) = refresh(&app, "web", &token, "").await;
        assert_eq!(s, 200);
        token = rt(&b);
    }
    env.clock.advance(absolute - elapsed);
    assert_eq!(
        refresh(&app, "web", &token, "").await.0,
        400,
        "no fresh absolute lifetime on rotation"
    );

    let env = Env::new();
    let first = signed_in(&env).await;
    let app = env.app().await;
    env.state
        .store
        .write(|c| {
            c.execute(
                "UPDATE users SET disabled_at = 1 WHERE username = 'alice'",
                &[],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        refresh(&app, "web", &rt(&first), "").await.0,
        400,
        "a disabled person's family stops at once"
    );
}

#[actix_web::test]
async fn refresh_tokens_are_stored_only_as_hashes() {
    let env = Env::new();
    let first = signed_in(&env).await;
    let token = rt(&first);
    let found: i64 = env
        .state
        .store
        .read(move |c| {
            c.scalar(
                "SELECT count(*) FROM refresh_tokens WHERE token_hash = ?1",
                deputy::args![&token],
            )
        })
        .await
        .unwrap();
    assert_eq!(found, 0);
    assert_eq!(env.count("SELECT count(*) FROM refresh_tokens").await, 1);
}

async fn post_form<S>(app: &S, path: &str, body: &str) -> (u16, Value)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    json_of(test::call_service(app, form_post(path, body).to_request()).await).await
}

#[actix_web::test]
async fn refresh_tokens_introspect_for_their_own_client_and_revoke_their_family() {
    let env = Env::new();
    let first = signed_in(&env).await;
    env.app_client("other").await;
    let app = env.app().await;
    let token = rt(&first);
    let (s, mine) = post_form(
        &app,
        "/introspect",
        &format!("client_id=web&token={token}&token_type_hint=access_token"),
    )
    .await;
    // Public clients may not introspect at all (RFC 7662 §2.1 requires authorization).
    assert_eq!(s, 401, "{mine}");
    let secret = env.confidential_app("conf").await;
    let code = sign_in(&app, &mut Browser::default(), "conf", "alice", "").await;
    let body = format!(
        "grant_type=authorization_code&code={code}&client_id=conf&client_secret={}&code_verifier={VERIFIER}",
        enc(&secret)
    );
    let (s, conf) = post_form(&app, "/token", &body).await;
    assert_eq!(s, 200, "{conf}");
    let conf_rt = rt(&conf);
    let auth = format!("client_id=conf&client_secret={}", enc(&secret));
    let (s, info) = post_form(&app, "/introspect", &format!("{auth}&token={conf_rt}")).await;
    assert_eq!(s, 200);
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "conf");
    assert_eq!(info["token_type"], "refresh_token");
    // Revoking the refresh token kills the family and its access tokens (RFC 7009 §2.1).
    let resp = test::call_service(
        &app,
        form_post(
            "/revoke",
            &format!("{auth}&token={conf_rt}&token_type_hint=refresh_token"),
        )
        .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let (_, info) = post_form(&app, "/introspect", &format!("{auth}&token={conf_rt}")).await;
    assert_eq!(info, serde_json::json!({"active": false}));
    let (_, info) = post_form(
        &app,
        "/introspect",
        &format!("{auth}&token={}", conf["access_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(info, serde_json::json!({"active": false}));
    let (s, _) = post_form(
        &app,
        "/token",
        &format!("grant_type=refresh_token&{auth}&refresh_token={conf_rt}"),
    )
    .await;
    assert_eq!(s, 400);
    // The public client's own family is untouched.
    assert_eq!(refresh(&app, "web", &token, "").await.0, 200);
}

#[actix_web::test]
async fn a_public_client_revokes_its_own_refresh_family_but_not_anothers() {
    let env = Env::new();
    let first = signed_in(&env).await;
    env.app_client("other").await;
    let app = env.app().await;
    let token = rt(&first);
    let resp = test::call_service(
        &app,
        form_post("/revoke", &format!("client_id=other&token={token}")).to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        refresh(&app, "web", &token, "").await.0,
        200,
        "another client's revocation changes nothing"
    );
    let env = Env::new();
    let first = signed_in(&env).await;
    let app = env.app().await;
    let token = rt(&first);
    let resp = test::call_service(
        &app,
        form_post("/revoke", &format!("client_id=web&token={token}")).to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(refresh(&app, "web", &token, "").await.0, 400);
    assert!(access_revoked(&env, first["access_token"].as_str().unwrap()).await);
}

#[actix_web::test]
async fn removing_a_client_kills_its_refresh_families_even_if_the_id_is_registered_again() {
    let env = Env::new();
    let first = signed_in(&env).await;
    let out = env
        .cli()
        .args(["client", "remove", "web"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.app_client("web").await;
    let app = env.app().await;
    let (s, b) = refresh(&app, "web", &rt(&first), "").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        env.count("SELECT count(*) FROM consent_scopes WHERE client_id = 'web'")
            .await,
        0
    );
}

#[actix_web::test]
async fn a_code_whose_grant_was_revoked_yields_nothing() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let code = sign_in(&app, &mut Browser::default(), "web", "alice", "").await;
    // Consent withdrawn (or an administrator revoked the grant) before redemption.
    env.state
        .store
        .write(|c| {
            let g: String = c.scalar("SELECT id FROM grants", &[])?;
            deputy::store::refresh::revoke_family(c, &g, T0, "test").map(|_| ())
        })
        .await
        .unwrap();
    let (s, b) = redeem(&app, "web", &code, "").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(env.count("SELECT count(*) FROM tokens").await, 0);
}

/// The trail says exactly what happened: a grace-window retry returns the
/// existing successor, so it records `refresh_retried` naming the access and
/// ID tokens it did issue, and no `token_issued` for a refresh token.
#[actix_web::test]
async fn a_grace_retry_is_recorded_as_such_and_issues_no_refresh_token() {
    let env = Env::new();
    let first = signed_in(&env).await;
    let app = env.app().await;
    let (_, second) = refresh(&app, "web", &rt(&first), "").await;
    let issued_refresh = "SELECT count(*) FROM audit_events WHERE event = 'token_issued' \
        AND detail LIKE '%\"kind\":\"refresh\"%'";
    assert_eq!(env.count(issued_refresh).await, 2, "sign-in and rotation");
    let (s, again) = refresh(&app, "web", &rt(&first), "").await;
    assert_eq!(s, 200);
    assert_eq!(rt(&again), rt(&second));
    assert_eq!(
        env.count(issued_refresh).await,
        2,
        "the retry issued no refresh token"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE event = 'refresh_rotated'")
            .await,
        1
    );
    let detail: Value = serde_json::from_str(
        &env.state
            .store
            .read(|c| {
                c.scalar::<String>(
                    "SELECT detail FROM audit_events WHERE event = 'refresh_retried'",
                    &[],
                )
            })
            .await
            .unwrap(),
    )
    .unwrap();
    let access = peek(again["access_token"].as_str().unwrap()).1["jti"].clone();
    let id = peek(again["id_token"].as_str().unwrap()).1["jti"].clone();
    assert_eq!(detail["issued"], serde_json::json!([access, id]));
    assert_eq!(detail["refresh_token_issued"], false);
    // Each token it names has its own token_issued event.
    for jti in [access, id] {
        assert_eq!(
            env.count_with(
                "SELECT count(*) FROM audit_events WHERE event = 'token_issued' AND jti = ?1",
                vec![jti.as_str().unwrap().to_string()],
            )
            .await,
            1
        );
    }
}
