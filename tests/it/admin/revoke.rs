//! `POST /admin/revoke`: the cascade at depth three, actors, clients, the
//! audit event, bad bodies, store failures. Person and grant selectors, which
//! reach refresh families, are in `families.rs`.

use actix_web::test;
use deputy::model::AuthMethod;
use serde_json::{json, Value};

use super::*;
use crate::support::*;
use crate::token_status::{introspect, jti_of, record, token_for, App};

/// Services that can introspect the chain's tokens (each its own).
async fn chain_clients(env: &Env) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for id in ["app1", "agent-a", "agent-b"] {
        out.push((
            id,
            env.secret_service(id, AuthMethod::ClientSecretBasic).await,
        ));
    }
    out
}

/// The chain as real tokens: root (app1), child acting as agent-a,
/// grandchild acting as agent-b for agent-a. Returns the three JWTs.
async fn minted_chain(env: &Env) -> [String; 3] {
    let root = mint(env, "app1", None, None).await;
    let child = mint(
        env,
        "agent-a",
        Some(&jti_of(&root)),
        Some(json!({"sub": "agent-a"})),
    )
    .await;
    let grandchild = mint(
        env,
        "agent-b",
        Some(&jti_of(&child)),
        Some(json!({"sub": "agent-b", "act": {"sub": "agent-a"}})),
    )
    .await;
    [root, child, grandchild]
}

async fn active(app: &impl App, clients: &[(&str, String)], i: usize, token: &str) -> bool {
    let (id, secret) = &clients[i];
    let (status, body) = introspect(app, id, secret, &format!("token={token}")).await;
    assert_eq!(status, 200);
    body["active"].as_bool().unwrap()
}

#[actix_web::test]
async fn revoking_the_root_revokes_three_levels_in_one_go_with_one_audit_event() {
    let env = Env::new();
    let clients = chain_clients(&env).await;
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    let tokens = minted_chain(&env).await;
    for (i, t) in tokens.iter().enumerate() {
        assert!(active(&app, &clients, i, t).await);
    }

    let root = jti_of(&tokens[0]);
    let (status, body) = post_revoke(&app, &admin, json!({ "jti": root })).await;
    assert_eq!((status, body), (200, json!({"revoked": 3})));
    for (i, t) in tokens.iter().enumerate() {
        assert!(
            !active(&app, &clients, i, t).await,
            "level {i} still active"
        );
        let r = record(&env, &jti_of(t)).await;
        assert_eq!(
            (r.revoked_at, r.revoked_reason.as_deref()),
            (Some(T0), Some("revoked_by_admin"))
        );
    }

    let events = admin_events(&env).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (
            e.mode.as_str(),
            e.client_id.as_deref(),
            e.client_kind.as_deref(),
            e.jti.as_deref()
        ),
        ("admin", Some("admin"), Some("service"), Some(root.as_str()))
    );
    let detail: Value = serde_json::from_str(e.detail.as_deref().unwrap()).unwrap();
    assert_eq!(
        detail,
        json!({"selector": {"jti": root}, "revoked": 3, "grants": 0, "via": "api", "admin_jti": jti_of(&admin)})
    );

    // Again: nothing left to revoke, and the admin action is still recorded.
    let (status, body) = post_revoke(&app, &admin, json!({ "jti": root })).await;
    assert_eq!((status, body), (200, json!({"revoked": 0})));
    assert_eq!(admin_events(&env).await.len(), 2);
    // An unknown jti is no error: nothing matched.
    let (status, body) = post_revoke(&app, &admin, json!({"jti": "no-such-token"})).await;
    assert_eq!((status, body), (200, json!({"revoked": 0})));
}

#[actix_web::test]
async fn revoking_an_actor_revokes_what_it_holds_its_chains_and_their_descendants_only() {
    let env = Env::new();
    let clients = chain_clients(&env).await;
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    let tokens = minted_chain(&env).await;
    // Look-alike names are other actors (these tokens belong to another client).
    let lookalike = mint(&env, "agent-z", None, Some(json!({"sub": "agent_a"}))).await;
    let spaced = mint(&env, "agent-z", None, Some(json!({"sub": "agent-a2"}))).await;
    // A token issued to agent-a itself is what agent-a can do: it goes too.
    let own = mint(&env, "agent-a", None, None).await;

    let (status, body) = post_revoke(&app, &admin, json!({"actor": "agent-a"})).await;
    assert_eq!((status, body), (200, json!({"revoked": 3})));
    assert!(revoked_at(&env, &jti_of(&own)).await.is_some());
    assert!(
        active(&app, &clients, 0, &tokens[0]).await,
        "the root is not agent-a's"
    );
    assert!(!active(&app, &clients, 1, &tokens[1]).await);
    assert!(!active(&app, &clients, 2, &tokens[2]).await);
    assert_eq!(revoked_at(&env, &jti_of(&lookalike)).await, None);
    assert_eq!(revoked_at(&env, &jti_of(&spaced)).await, None);

    // agent-b appears only in the grandchild's chain.
    let env = Env::new();
    let clients = chain_clients(&env).await;
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    let tokens = minted_chain(&env).await;
    let (status, body) = post_revoke(&app, &admin, json!({"actor": "agent-b"})).await;
    assert_eq!((status, body), (200, json!({"revoked": 1})));
    assert!(active(&app, &clients, 0, &tokens[0]).await);
    assert!(active(&app, &clients, 1, &tokens[1]).await);
    assert!(!active(&app, &clients, 2, &tokens[2]).await);
}

#[actix_web::test]
async fn revoking_a_client_revokes_what_it_was_issued_and_what_derives_from_it() {
    let env = Env::new();
    let svc = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let other = env
        .secret_service("other", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    let t1 = token_for(&app, "svc", &svc, "").await;
    let t2 = token_for(&app, "svc", &svc, "").await;
    let child = mint(
        &env,
        "agent-a",
        Some(&jti_of(&t1)),
        Some(json!({"sub": "agent-a"})),
    )
    .await;
    let kept = token_for(&app, "other", &other, "").await;

    let (status, body) = post_revoke(&app, &admin, json!({"client_id": "svc"})).await;
    assert_eq!((status, body), (200, json!({"revoked": 3})));
    for t in [&t1, &t2, &child] {
        assert!(revoked_at(&env, &jti_of(t)).await.is_some());
    }
    assert_eq!(revoked_at(&env, &jti_of(&kept)).await, None);
}

#[actix_web::test]
async fn a_bad_revoke_body_is_400_and_revokes_nothing() {
    let env = Env::new();
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    insert(&env, chain()).await;
    for body in [
        json!({}),
        json!({"jti": "root", "sub": "person-1"}),
        json!({"jti": ""}),
        json!({"token": "root"}),
        json!({"jti": 5}),
        json!(["root"]),
    ] {
        let (status, resp) = post_revoke(&app, &admin, body.clone()).await;
        assert_eq!(
            (status, resp["error"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
    }
    let req = form_post("/admin/revoke", "jti=root")
        .insert_header(("Authorization", format!("Bearer {admin}")))
        .to_request();
    let (status, resp) = json_of(test::call_service(&app, req).await).await;
    assert_eq!(
        (status, resp["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_eq!(
        env.count("SELECT count(*) FROM tokens WHERE revoked_at IS NOT NULL")
            .await,
        0
    );
    assert!(admin_events(&env).await.is_empty());
}

async fn drop_table(env: &Env, sql: &'static str) {
    env.state
        .store
        .write(move |c| {
            c.batch(sql)?;
            Ok(())
        })
        .await
        .unwrap();
}

#[actix_web::test]
async fn a_failed_audit_write_is_a_500_and_rolls_the_revocation_back() {
    let env = Env::new();
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    insert(&env, chain()).await;
    drop_table(&env, "DROP TABLE audit_events").await;
    let (status, body) = post_revoke(&app, &admin, json!({"jti": "root"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("server_error"))
    );
    for jti in ["root", "child", "grandchild"] {
        assert_eq!(revoked_at(&env, jti).await, None, "{jti}");
    }
    let (status, body) = get(&app, "/admin/audit", &admin).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("server_error"))
    );
    // The listings still work: they do not need the trail.
    assert_eq!(get(&app, "/admin/tokens", &admin).await.0, 200);
}

#[actix_web::test]
async fn a_store_failure_is_a_5xx_never_a_401_or_a_success() {
    let env = Env::new();
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    drop_table(&env, "DROP TABLE grants").await;
    // The caller check still works; the trace needs the grants table.
    insert(&env, chain()).await;
    let (status, body) = get(&app, "/admin/tokens/root", &admin).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("server_error"))
    );
    let (status, body) = post_revoke(&app, &admin, json!({"grant_id": "g-1"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("server_error"))
    );
    // Without the tokens table not even the admin token can be checked: 500.
    drop_table(&env, "DROP TABLE tokens").await;
    for path in ["/admin/tokens", "/admin/audit", "/admin/tokens/root"] {
        let (status, body) = get(&app, path, &admin).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (500, Some("server_error")),
            "{path}"
        );
    }
    let (status, _) = post_revoke(&app, &admin, json!({"jti": "root"})).await;
    assert_eq!(status, 500);
}

/// The issue's "what can this agent still do for this person, and end it in
/// one command": the listing answers it, and `{"actor", "sub"}` ends it for
/// that person only — tokens issued to the agent, naming it in `act`, or
/// addressed to it (which it may exchange, RFC 8693 §2.1), with descendants.
#[actix_web::test]
async fn revoking_an_actor_for_one_person_ends_what_it_can_use_for_that_person_only() {
    let env = Env::new();
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    let mut to_agent = rec("p1-to-agent", "app1", None, None);
    to_agent.audience = "agent-a".into();
    let derived = rec(
        "p1-derived",
        "agent-a",
        Some("p1-to-agent"),
        Some(json!({"sub": "agent-a"})),
    );
    let plain = rec("p1-plain", "app1", None, None);
    let mut other_to = rec("p2-to-agent", "app1", None, None);
    other_to.subject = "person-2".into();
    other_to.audience = "agent-a".into();
    let mut other_own = rec("p2-own", "agent-a", None, Some(json!({"sub": "agent-a"})));
    other_own.subject = "person-2".into();
    insert(&env, vec![to_agent, derived, plain, other_to, other_own]).await;

    let (status, body) = get(
        &app,
        "/admin/tokens?actor=agent-a&sub=person-1&active=true",
        &admin,
    )
    .await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["jti"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["p1-derived", "p1-to-agent"]);

    let (status, body) =
        post_revoke(&app, &admin, json!({"actor": "agent-a", "sub": "person-1"})).await;
    assert_eq!((status, body), (200, json!({"revoked": 2})));
    for (jti, revoked) in [
        ("p1-to-agent", true),
        ("p1-derived", true),
        ("p1-plain", false),
        ("p2-to-agent", false),
        ("p2-own", false),
    ] {
        assert_eq!(revoked_at(&env, jti).await.is_some(), revoked, "{jti}");
    }
    let (status, body) = post_revoke(&app, &admin, json!({"actor": "agent-a"})).await;
    assert_eq!((status, body), (200, json!({"revoked": 2})));
    assert!(revoked_at(&env, "p2-own").await.is_some());
    assert!(revoked_at(&env, "p1-plain").await.is_none());
}
