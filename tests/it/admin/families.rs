//! `POST /admin/revoke` where refresh families are involved: a person, a
//! grant, a refresh token's `jti`. Refresh must stop working with them.

use actix_web::test;
use serde_json::{json, Value};

use super::*;
use crate::people::{redeem, sign_in, Browser};
use crate::support::*;
use crate::token_status::{jti_of, record, App};

async fn refresh(app: &impl App, client: &str, token: &str) -> (u16, Value) {
    let body = format!("grant_type=refresh_token&client_id={client}&refresh_token={token}");
    json_of(test::call_service(app, form_post("/token", &body).to_request()).await).await
}

/// alice signed in to `client`; her token response.
async fn alice_via(app: &impl App, client: &str) -> Value {
    let code = sign_in(app, &mut Browser::default(), client, "alice", "").await;
    let (status, tokens) = redeem(app, client, &code, "").await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap()
}

#[actix_web::test]
async fn revoking_a_person_revokes_her_tokens_descendants_and_refresh_families() {
    let env = Env::new();
    env.app_client("web").await;
    env.app_client("web2").await;
    let alice = env.person("alice").await;
    env.person("bob").await;
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    let a1 = alice_via(&app, "web").await;
    let a2 = alice_via(&app, "web2").await;
    let code = sign_in(&app, &mut Browser::default(), "web", "bob", "").await;
    let (_, bob) = redeem(&app, "web", &code, "").await;
    // An agent's token derived from alice's access token.
    let derived = mint(
        &env,
        "agent-a",
        Some(&jti_of(s(&a1, "access_token"))),
        Some(json!({"sub": "agent-a"})),
    )
    .await;

    // Two sign-ins × (access, ID, refresh) + the derived token.
    let (status, body) = post_revoke(&app, &admin, json!({ "sub": alice })).await;
    assert_eq!((status, body), (200, json!({"revoked": 7})));
    for (client, t) in [("web", &a1), ("web2", &a2)] {
        let (status, body) = refresh(&app, client, s(t, "refresh_token")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
    assert!(revoked_at(&env, &jti_of(&derived)).await.is_some());
    assert_eq!(
        env.count("SELECT count(*) FROM grants WHERE revoked_at IS NULL")
            .await,
        1,
        "only bob's grant is left"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL")
            .await,
        1
    );
    assert_eq!(refresh(&app, "web", s(&bob, "refresh_token")).await.0, 200);
    let e = admin_events(&env).await.remove(0);
    assert_eq!(e.person.as_deref(), Some(alice.as_str()));
}

#[actix_web::test]
async fn revoking_a_grant_revokes_its_family_and_nothing_else() {
    let env = Env::new();
    env.app_client("web").await;
    env.app_client("web2").await;
    env.person("alice").await;
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    let a1 = alice_via(&app, "web").await;
    let a2 = alice_via(&app, "web2").await;
    let grant_id = record(&env, &jti_of(s(&a1, "access_token")))
        .await
        .grant_id
        .unwrap();

    let (status, body) = post_revoke(&app, &admin, json!({ "grant_id": grant_id })).await;
    assert_eq!((status, body), (200, json!({"revoked": 3})));
    let (status, body) = refresh(&app, "web", s(&a1, "refresh_token")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(refresh(&app, "web2", s(&a2, "refresh_token")).await.0, 200);
    let (_, t) = get(
        &app,
        &format!("/admin/tokens/{}", jti_of(s(&a1, "access_token"))),
        &admin,
    )
    .await;
    assert_eq!(
        (&t["grant"]["id"], &t["grant"]["active"]),
        (&json!(grant_id), &json!(false))
    );
}

#[actix_web::test]
async fn revoking_a_refresh_tokens_jti_revokes_its_family() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    let a1 = alice_via(&app, "web").await;
    let refresh_jti: String = env
        .state
        .store
        .read(|c| c.scalar("SELECT jti FROM tokens WHERE kind = 'refresh'", &[]))
        .await
        .unwrap();

    // RFC 7009 §2.1: the refresh token's family and what it issued — the
    // access and ID tokens of the grant — go with it.
    let (status, body) = post_revoke(&app, &admin, json!({ "jti": refresh_jti })).await;
    assert_eq!((status, body), (200, json!({"revoked": 3})));
    let (status, body) = refresh(&app, "web", s(&a1, "refresh_token")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        env.count("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL")
            .await,
        0
    );
}

/// prompt=none for `client` with alice's session: Some(code) or the error.
async fn silently(app: &impl App, browser: &Browser, client: &str) -> Result<String, String> {
    let req = test::TestRequest::get()
        .uri(&crate::people::authorize_query(client, "&prompt=none"))
        .insert_header(("Cookie", browser.header()))
        .to_request();
    let resp = test::call_service(app, req).await;
    assert_eq!(resp.status().as_u16(), 303);
    let loc = crate::people::location(&resp);
    match crate::people::query(&loc, "code") {
        Some(code) => Ok(code),
        None => Err(crate::people::query(&loc, "error").unwrap_or_default()),
    }
}

/// Revoking an actor for a person (`{"actor": A, "sub": S}`), or an actor
/// altogether, also ends its unredeemed authorization codes and the consent
/// the person gave it, in the same transaction: a code obtained just before
/// redeems into nothing, and prompt=none no longer issues codes.
#[actix_web::test]
async fn revoking_an_actor_ends_its_outstanding_codes_and_remembered_consent() {
    for with_person in [true, false] {
        let env = Env::new();
        env.app_client("agent-web").await;
        env.app_client("other").await;
        let alice = env.person("alice").await;
        let app = env.app().await;
        let admin = admin_token(&app, &env).await;
        let mut browser = Browser::default();
        // Consent given; a code obtained silently and not yet redeemed.
        sign_in(&app, &mut browser, "agent-web", "alice", "").await;
        let pending = silently(&app, &browser, "agent-web").await.unwrap();
        sign_in(&app, &mut browser, "other", "alice", "").await;
        let body = if with_person {
            json!({"actor": "agent-web", "sub": alice})
        } else {
            json!({"actor": "agent-web"})
        };
        let (status, _) = post_revoke(&app, &admin, body).await;
        assert_eq!(status, 200);
        let (status, b) = redeem(&app, "agent-web", &pending, "").await;
        assert_eq!(
            (status, b["error"].as_str()),
            (400, Some("invalid_grant")),
            "a code obtained before the revocation (person given: {with_person})"
        );
        assert_eq!(
            silently(&app, &browser, "agent-web").await,
            Err("consent_required".to_string()),
            "consent withdrawn with the actor (person given: {with_person})"
        );
        // Another client of the same person is untouched.
        assert!(silently(&app, &browser, "other").await.is_ok());
        let events = admin_events(&env).await;
        let detail: Value =
            serde_json::from_str(events.last().unwrap().detail.as_deref().unwrap()).unwrap();
        assert_eq!(detail["consents_withdrawn"], 1);
    }
}
