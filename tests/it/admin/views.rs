//! `GET /admin/tokens`, `GET /admin/tokens/{jti}` and `GET /admin/audit`.

use deputy::audit::{AuditEvent, Mode};
use serde_json::{json, Value};

use super::*;
use crate::support::*;

fn jtis(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["jti"].as_str().unwrap())
        .collect()
}

/// The chain, plus person-2's revoked token and an expired service token.
async fn seeded(env: &Env) {
    let mut other = rec("other", "app2", None, None);
    other.subject = "person-2".into();
    other.issued_at = T0 + 3;
    other.revoked_at = Some(T0 + 4);
    other.revoked_reason = Some("revoked_by_client".into());
    let mut old = rec("old", "svc", None, None);
    old.subject = "svc".into();
    old.subject_kind = deputy::model::SubjectKind::Service;
    old.client_kind = "service".into();
    old.audience = "https://other.example".into();
    old.issued_at = T0 - 7200;
    old.expires_at = T0 - 3600;
    // An actor whose name only looks like agent-a.
    let mut lookalike = rec(
        "lookalike",
        "agent-x",
        None,
        Some(json!({"sub": "agent_a"})),
    );
    lookalike.issued_at = T0 + 5;
    let mut all = chain();
    all.extend([other, old, lookalike]);
    insert(env, all).await;
}

#[actix_web::test]
async fn listing_filters_by_sub_client_actor_audience_and_activity() {
    let env = Env::new();
    seeded(&env).await;
    let app = env.app().await;
    // Issued last, so the order of the listing is fixed.
    env.clock.set(T0 + 100);
    let admin = admin_token(&app, &env).await;
    let admin_jti = peek(&admin).1["jti"].as_str().unwrap().to_string();

    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "",
            vec![
                "old",
                "root",
                "child",
                "grandchild",
                "other",
                "lookalike",
                &admin_jti,
            ],
        ),
        (
            "?sub=person-1",
            vec!["root", "child", "grandchild", "lookalike"],
        ),
        ("?sub=person-2", vec!["other"]),
        ("?client_id=agent-b", vec!["grandchild"]),
        ("?actor=agent-a", vec!["child", "grandchild"]),
        ("?actor=agent-b", vec!["grandchild"]),
        ("?actor=app1", vec!["root"]),
        ("?aud=https%3A%2F%2Fother.example", vec!["old"]),
        ("?active=false", vec!["old", "other"]),
        ("?active=true&sub=person-1&limit=2", vec!["root", "child"]),
        ("?actor=nobody", vec![]),
    ];
    for (query, expected) in cases {
        let (status, body) = get(&app, &format!("/admin/tokens{query}"), &admin).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(jtis(&body), expected, "{query}");
    }

    let (_, body) = get(&app, "/admin/tokens?client_id=agent-b", &admin).await;
    assert_eq!(
        body,
        json!([{
            "jti": "grandchild", "kind": "access", "sub": "person-1",
            "subject_kind": "person", "client_id": "agent-b", "client_kind": "agent",
            "act": {"sub": "agent-b", "act": {"sub": "agent-a"}},
            "aud": "https://api.example", "scope": "read", "task": "book a flight",
            "iat": T0 + 2, "exp": T0 + 3600, "parent_jti": "child", "grant_id": null,
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "rule_id": null, "may_act": null, "actor_token_jti": null, "cnf": null, "active": true, "revoked_at": null, "revoked_reason": null,
        }])
    );
    let (_, body) = get(&app, "/admin/tokens?sub=person-2", &admin).await;
    assert_eq!(
        (
            &body[0]["active"],
            &body[0]["revoked_at"],
            &body[0]["revoked_reason"]
        ),
        (&json!(false), &json!(T0 + 4), &json!("revoked_by_client"))
    );

    for bad in [
        "?active=maybe",
        "?limit=0",
        "?limit=1001",
        "?subject=x",
        "?sub=a&sub=b",
    ] {
        let (status, body) = get(&app, &format!("/admin/tokens{bad}"), &admin).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{bad}"
        );
    }
}

#[actix_web::test]
async fn trace_shows_ancestors_nearest_first_descendants_and_the_grant() {
    let env = Env::new();
    insert(&env, chain()).await;
    insert_grant(&env, grant_g1()).await;
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;

    let (status, t) = get(&app, "/admin/tokens/grandchild", &admin).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["token"]["jti"], "grandchild");
    assert_eq!(
        t["token"]["act"],
        json!({"sub": "agent-b", "act": {"sub": "agent-a"}})
    );
    assert_eq!(jtis(&t["ancestors"]), vec!["child", "root"]);
    assert_eq!(t["ancestors"][0]["rule_id"], "rule-7");
    assert_eq!(jtis(&t["descendants"]), Vec::<&str>::new());
    // The grant the chain hangs from, found through the root.
    let grant = json!({
        "id": "g-1", "grant_type": "authorization_code", "sub": "person-1",
        "client_id": "app1", "scope": "openid read", "auth_time": T0 - 60,
        "created_at": T0 - 30, "active": true, "revoked_at": null,
    });
    assert_eq!(t["grant"], grant);

    let (_, t) = get(&app, "/admin/tokens/root", &admin).await;
    assert_eq!(jtis(&t["ancestors"]), Vec::<&str>::new());
    assert_eq!(jtis(&t["descendants"]), vec!["child", "grandchild"]);
    assert_eq!(t["grant"], grant);

    let (_, t) = get(&app, "/admin/tokens/child", &admin).await;
    assert_eq!(jtis(&t["ancestors"]), vec!["root"]);
    assert_eq!(jtis(&t["descendants"]), vec!["grandchild"]);
    assert_eq!(t["token"]["task"], "book a flight");

    // A client-credentials token hangs from no grant.
    let admin_jti = peek(&admin).1["jti"].as_str().unwrap().to_string();
    let (_, t) = get(&app, &format!("/admin/tokens/{admin_jti}"), &admin).await;
    assert_eq!(t["grant"], Value::Null);
    assert_eq!(t["token"]["scope"], "deputy:admin");

    let (status, body) = get(&app, "/admin/tokens/unknown", &admin).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    // A NUL cannot be in any id (nor in PostgreSQL text): bad input, not a 500.
    let (status, body) = get(&app, "/admin/tokens/root%00x", &admin).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = post_revoke(&app, &admin, json!({"jti": "root\u{0}"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert!(env.token_record("root").await.revoked_at.is_none());
}

async fn add_event(env: &Env, e: AuditEvent) {
    env.state
        .store
        .write(move |c| deputy::store::audit::insert(c, &e))
        .await
        .unwrap();
}

#[actix_web::test]
async fn audit_query_filters_and_returns_newest_last() {
    let env = Env::new();
    let app = env.app().await;
    // The admin token's own issuance is event 1 (at T0).
    let admin = admin_token(&app, &env).await;
    let mut e = AuditEvent::new(T0 + 10, "token_exchanged", Mode::Delegated)
        .client("agent-b", "agent")
        .person(Some("person-1"));
    e.actor_chain = Some(json!({"sub": "agent-b", "act": {"sub": "agent-a"}}).to_string());
    e.task = Some("book a flight".into());
    e.detail = Some(json!({"n": 1}).to_string());
    add_event(&env, e).await;
    add_event(
        &env,
        AuditEvent::new(T0 + 20, "token_issued", Mode::Person)
            .client("app1", "app")
            .person(Some("person-1")),
    )
    .await;
    add_event(
        &env,
        AuditEvent::new(T0 + 30, "login_failed", Mode::Person)
            .person(Some("person-2"))
            .refused("bad_password"),
    )
    .await;

    let events = |v: &Value| -> Vec<(i64, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["at"].as_i64().unwrap(),
                    e["event"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let ev = |at: i64, name: &str| (at, name.to_string());
    let cases = vec![
        (
            "",
            vec![
                ev(T0, "token_issued"),
                ev(T0 + 10, "token_exchanged"),
                ev(T0 + 20, "token_issued"),
                ev(T0 + 30, "login_failed"),
            ],
        ),
        (
            "?person=person-1",
            vec![ev(T0 + 10, "token_exchanged"), ev(T0 + 20, "token_issued")],
        ),
        ("?client_id=app1", vec![ev(T0 + 20, "token_issued")]),
        ("?actor=agent-a", vec![ev(T0 + 10, "token_exchanged")]),
        ("?actor=app1", vec![ev(T0 + 20, "token_issued")]),
        ("?task=book+a+flight", vec![ev(T0 + 10, "token_exchanged")]),
        (
            "?event=token_issued",
            vec![ev(T0, "token_issued"), ev(T0 + 20, "token_issued")],
        ),
        (
            "?since=1900000015&until=1900000030",
            vec![ev(T0 + 20, "token_issued"), ev(T0 + 30, "login_failed")],
        ),
        ("?limit=1", vec![ev(T0, "token_issued")]),
    ];
    for (query, expected) in cases {
        let (status, body) = get(&app, &format!("/admin/audit{query}"), &admin).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(events(&body), expected, "{query}");
    }
    let (_, body) = get(&app, "/admin/audit?actor=agent-b", &admin).await;
    let e = &body[0];
    assert_eq!(
        e["act"],
        json!({"sub": "agent-b", "act": {"sub": "agent-a"}})
    );
    assert_eq!(e["detail"], json!({"n": 1}));
    assert_eq!(
        (e["mode"].as_str(), e["outcome"].as_str()),
        (Some("delegated"), Some("ok"))
    );
    assert_eq!(e["client_kind"], "agent");

    for bad in ["?since=yesterday", "?who=x", "?limit=5000"] {
        let (status, body) = get(&app, &format!("/admin/audit{bad}"), &admin).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{bad}"
        );
    }
}

/// A brokered token hangs from two tokens: the subject token (`parent_jti`)
/// and the actor's own token (`actor_token_jti`, RFC 8693 §2.1). The trace
/// walks both, nearest first, and each is followed to its own roots.
#[actix_web::test]
async fn trace_walks_both_parents_of_a_brokered_token() {
    let env = Env::new();
    let mut records = chain();
    // The actor's own service token, itself exchanged from a service root.
    let svc_root = rec("svc-root", "agent-b", None, None);
    let mut actor_token = rec("actor-token", "agent-b", Some("svc-root"), None);
    actor_token.issued_at = T0 + 1;
    let mut brokered = rec(
        "brokered",
        "broker",
        Some("child"),
        Some(json!({"sub": "agent-b", "act": {"sub": "agent-a"}})),
    );
    brokered.actor_token_jti = Some("actor-token".into());
    brokered.issued_at = T0 + 3;
    records.extend([svc_root, actor_token, brokered]);
    insert(&env, records).await;
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;
    let (status, t) = get(&app, "/admin/tokens/brokered", &admin).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        jtis(&t["ancestors"]),
        vec!["child", "actor-token", "root", "svc-root"]
    );
    // Both parents list it among their descendants.
    let (_, t) = get(&app, "/admin/tokens/svc-root", &admin).await;
    assert_eq!(jtis(&t["descendants"]), vec!["actor-token", "brokered"]);
}
