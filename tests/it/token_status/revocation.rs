//! Token revocation (RFC 7009): own tokens only, cascades, audit, store failures.

use actix_web::test;
use deputy::clock::Clock;
use deputy::model::{AuthMethod, ClientKind, GrantType};
use serde_json::{json, Value};

use super::{basic, introspect, jti_of, mint, record, token_for, App};
use crate::support::*;

/// POST /revoke with HTTP Basic; returns status, Cache-Control and the body.
async fn revoke(app: &impl App, id: &str, secret: &str, body: &str) -> (u16, String, Vec<u8>) {
    let req = form_post("/revoke", body)
        .insert_header(("Authorization", basic(id, secret)))
        .to_request();
    let resp = test::call_service(app, req).await;
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, cache, test::read_body(resp).await.to_vec())
}

async fn revoked_events(env: &Env) -> i64 {
    env.count("SELECT count(*) FROM audit_events WHERE event = 'token_revoked'")
        .await
}

#[actix_web::test]
async fn revoking_a_token_revokes_its_descendants_at_once_with_one_audit_event() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let agent_secret = env
        .secret_service("agent1", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let parent = token_for(&app, "svc", &secret, "").await;
    let parent_jti = jti_of(&parent);
    let child = mint(&env, "agent1", ClientKind::Agent, Some(&parent_jti)).await;
    let grandchild = mint(&env, "agent1", ClientKind::Agent, Some(&jti_of(&child))).await;
    for (id, s, t) in [("svc", &secret, &parent), ("agent1", &agent_secret, &child)] {
        assert_eq!(
            introspect(&app, id, s, &format!("token={t}")).await.1["active"],
            true
        );
    }

    let (status, cache, body) = revoke(&app, "svc", &secret, &format!("token={parent}")).await;
    assert_eq!((status, cache.as_str(), body.len()), (200, "no-store", 0));
    for (id, s, t) in [
        ("svc", &secret, &parent),
        ("agent1", &agent_secret, &child),
        ("agent1", &agent_secret, &grandchild),
    ] {
        let (status, body) = introspect(&app, id, s, &format!("token={t}")).await;
        assert_eq!((status, body), (200, json!({"active": false})));
    }
    let rec = record(&env, &jti_of(&grandchild)).await;
    assert_eq!(rec.revoked_at, Some(T0));
    assert_eq!(rec.revoked_reason.as_deref(), Some("revoked_by_client"));

    let events = env
        .state
        .store
        .read(|c| {
            deputy::store::audit::query(
                c,
                &deputy::store::audit::AuditQuery {
                    event: Some("token_revoked".into()),
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.mode, "service");
    assert_eq!(e.client_id.as_deref(), Some("svc"));
    assert_eq!(e.client_kind.as_deref(), Some("service"));
    assert_eq!(e.jti.as_deref(), Some(parent_jti.as_str()));
    assert_eq!(e.at, T0);
    let detail: Value = serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail, json!({"kind": "access", "revoked_count": 3}));

    // Revoking again: still 200, nothing changes, no second event.
    let (status, _, _) = revoke(&app, "svc", &secret, &format!("token={parent}")).await;
    assert_eq!(status, 200);
    assert_eq!(revoked_events(&env).await, 1);
}

#[actix_web::test]
async fn revoke_tree_on_a_parent_deactivates_a_child() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let agent_secret = env
        .secret_service("agent1", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let parent = token_for(&app, "svc", &secret, "").await;
    let child = mint(&env, "agent1", ClientKind::Agent, Some(&jti_of(&parent))).await;
    let parent_jti = jti_of(&parent);
    let n = env
        .state
        .store
        .write(move |c| deputy::store::tokens::revoke_tree(c, &parent_jti, T0, "admin"))
        .await
        .unwrap();
    assert_eq!(n, 2);
    let (status, body) = introspect(&app, "agent1", &agent_secret, &format!("token={child}")).await;
    assert_eq!((status, body), (200, json!({"active": false})));
    assert_eq!(
        record(&env, &jti_of(&child))
            .await
            .revoked_reason
            .as_deref(),
        Some("admin")
    );
}

#[actix_web::test]
async fn another_clients_revocation_changes_nothing() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let other = env
        .secret_service("other", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    let (status, cache, body) = revoke(&app, "other", &other, &format!("token={at}")).await;
    assert_eq!((status, cache.as_str(), body.len()), (200, "no-store", 0));
    assert_eq!(
        introspect(&app, "svc", &secret, &format!("token={at}"))
            .await
            .1["active"],
        true
    );
    assert_eq!(record(&env, &jti_of(&at)).await.revoked_at, None);
    assert_eq!(revoked_events(&env).await, 0);
}

#[actix_web::test]
async fn unknown_and_garbage_tokens_answer_200() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    let mut claims = crate::support::peek(&at).1;
    claims["jti"] = json!("never-issued");
    let unknown = deputy::token::sign(&env.state.keys.ring(), T0, "at+jwt", &claims).unwrap();
    for token in ["garbage", "a.b.c", unknown.as_str()] {
        let (status, _, body) =
            revoke(&app, "svc", &secret, &format!("token={}", enc(token))).await;
        assert_eq!((status, body.len()), (200, 0), "{token}");
    }
    assert_eq!(
        introspect(&app, "svc", &secret, &format!("token={at}"))
            .await
            .1["active"],
        true
    );
    assert_eq!(revoked_events(&env).await, 0);
}

#[actix_web::test]
async fn a_refresh_token_hint_still_finds_an_access_token() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    let body = format!("token={at}&token_type_hint=refresh_token");
    assert_eq!(revoke(&app, "svc", &secret, &body).await.0, 200);
    assert_eq!(record(&env, &jti_of(&at)).await.revoked_at, Some(T0));
}

#[actix_web::test]
async fn request_errors_at_revoke() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    let error = |(status, cache, body): (u16, String, Vec<u8>)| {
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(cache, "no-store");
        (status, json["error"].as_str().unwrap().to_string())
    };
    // RFC 7009 §2.1: token is required.
    let r = revoke(&app, "svc", &secret, "token_type_hint=access_token").await;
    assert_eq!(error(r), (400, "invalid_request".into()));
    // RFC 7009 §2.2.1: an unknown hint is unsupported_token_type.
    let r = revoke(
        &app,
        "svc",
        &secret,
        &format!("token={at}&token_type_hint=id_token"),
    )
    .await;
    assert_eq!(error(r), (400, "unsupported_token_type".into()));
    let r = revoke(&app, "svc", "wrong", &format!("token={at}")).await;
    assert_eq!(error(r), (401, "invalid_client".into()));
    let resp = test::call_service(&app, test::TestRequest::get().uri("/revoke").to_request()).await;
    assert_eq!(resp.status().as_u16(), 405);
    // None of these revoked anything.
    assert_eq!(
        introspect(&app, "svc", &secret, &format!("token={at}"))
            .await
            .1["active"],
        true
    );
}

#[actix_web::test]
async fn an_expired_token_can_still_be_revoked() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    env.clock.advance(400);
    assert_eq!(
        revoke(&app, "svc", &secret, &format!("token={at}")).await.0,
        200
    );
    assert_eq!(record(&env, &jti_of(&at)).await.revoked_at, Some(T0 + 400));
    assert_eq!(revoked_events(&env).await, 1);
}

#[actix_web::test]
async fn a_public_client_may_revoke_its_own_tokens_only() {
    let env = Env::new();
    let mut spa = client("spa", ClientKind::App, AuthMethod::None);
    spa.grant_types = vec![GrantType::AuthorizationCode];
    env.add_client(spa).await;
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let own = mint(&env, "spa", ClientKind::App, None).await;
    let foreign = token_for(&app, "svc", &secret, "").await;
    for t in [&own, &foreign] {
        let req = form_post("/revoke", &format!("token={t}&client_id=spa")).to_request();
        assert_eq!(test::call_service(&app, req).await.status().as_u16(), 200);
    }
    assert_eq!(
        record(&env, &jti_of(&own)).await.revoked_at,
        Some(env.clock.now())
    );
    assert_eq!(record(&env, &jti_of(&foreign)).await.revoked_at, None);
    // A delegated token's revocation is audited as delegated.
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE event = 'token_revoked' AND mode = 'delegated' AND person = 'person-1'")
            .await,
        1
    );
}

#[actix_web::test]
async fn a_replayed_assertion_revokes_nothing() {
    let env = Env::new();
    let kp = env.jwt_service("svc").await;
    let app = env.app().await;
    let get_token = |jti: &'static str| {
        let a = assertion(&kp, std_claims("svc", T0, jti), json!({}));
        form_post(
            "/token",
            &format!(
                "grant_type=client_credentials&client_assertion_type={}&client_assertion={a}",
                enc(deputy::client_auth::JWT_BEARER_ASSERTION_TYPE)
            ),
        )
        .to_request()
    };
    let t1 = json_of(test::call_service(&app, get_token("t1")).await)
        .await
        .1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let t2 = json_of(test::call_service(&app, get_token("t2")).await)
        .await
        .1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let a = assertion(&kp, std_claims("svc", T0, "rev"), json!({}));
    let req = |t: &str| {
        form_post(
            "/revoke",
            &format!(
                "token={t}&client_assertion_type={}&client_assertion={a}",
                enc(deputy::client_auth::JWT_BEARER_ASSERTION_TYPE)
            ),
        )
        .to_request()
    };
    assert_eq!(
        test::call_service(&app, req(&t1)).await.status().as_u16(),
        200
    );
    let (status, body) = json_of(test::call_service(&app, req(&t2)).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(record(&env, &jti_of(&t1)).await.revoked_at.is_some());
    assert_eq!(record(&env, &jti_of(&t2)).await.revoked_at, None);
}

#[actix_web::test]
async fn a_store_failure_at_revoke_is_a_500() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    env.state
        .store
        .write(|c| {
            c.batch("DROP TABLE tokens")?;
            Ok(())
        })
        .await
        .unwrap();
    let (status, _, body) = revoke(&app, "svc", &secret, &format!("token={at}")).await;
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, json["error"].as_str()),
        (500, Some("server_error"))
    );
}

#[actix_web::test]
async fn a_failed_audit_write_rolls_the_revocation_back() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    // The revocation itself can run; writing its audit event cannot.
    env.state
        .store
        .write(|c| {
            c.batch("DROP TABLE audit_events")?;
            Ok(())
        })
        .await
        .unwrap();
    let (status, _, body) = revoke(&app, "svc", &secret, &format!("token={at}")).await;
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, json["error"].as_str()),
        (500, Some("server_error"))
    );
    assert_eq!(record(&env, &jti_of(&at)).await.revoked_at, None);
    assert_eq!(
        introspect(&app, "svc", &secret, &format!("token={at}"))
            .await
            .1["active"],
        true
    );
}
