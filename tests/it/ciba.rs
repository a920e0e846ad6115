//! OpenID CIBA Core 1.0, poll mode: `/bc-authorize`, the person's decision,
//! and the token endpoint's `urn:openid:params:grant-type:ciba` grant.

use actix_web::test;
use deputy::ciba::Decision;
use deputy::model::{AuthMethod, ClientKind, GrantType};
use deputy::secret::{hash_secret, Argon2Profile};
use serde_json::Value;

use crate::people::*;
use crate::support::*;

const CIBA: &str = "urn%3Aopenid%3Aparams%3Agrant-type%3Aciba";
const API: &str = "https://api.example";

impl Env {
    /// A confidential agent (client_secret_post) registered for CIBA and
    /// `extra` grants; returns its secret.
    async fn ciba_agent(&self, id: &str, grants: &[GrantType]) -> String {
        let secret = deputy::secret::new_secret();
        let mut c = client(id, ClientKind::Agent, AuthMethod::ClientSecretPost);
        c.grant_types = grants.to_vec();
        c.scopes = vec!["notes:read".into()];
        c.audiences = vec![API.into()];
        c.secret_hash = Some(hash_secret(&secret, Argon2Profile::GeneratedSecret).unwrap());
        self.add_client(c).await;
        secret
    }

    /// The person `user_id` decides on the request behind `auth_req_id`.
    async fn decide(&self, user_id: &str, auth_req_id: &str, d: Decision) -> bool {
        let handle = self.handle(auth_req_id).await;
        let (user_id, now) = (user_id.to_string(), self.clock.now());
        self.state
            .store
            .write(move |c| deputy::ciba::decide(c, &user_id, &handle, d, now, now - 60))
            .await
            .unwrap()
            .is_ok()
    }

    async fn handle(&self, auth_req_id: &str) -> String {
        let hash = deputy::secret::sha256_b64(auth_req_id.as_bytes());
        self.state
            .store
            .read(move |c| {
                c.query_one(
                    "SELECT handle FROM backchannel_requests WHERE auth_req_id_hash = ?1",
                    deputy::args![hash],
                )
            })
            .await
            .unwrap()
            .unwrap()
            .get(0)
            .unwrap()
    }

    async fn events(&self, event: &str) -> i64 {
        self.count_with(
            "SELECT count(*) FROM audit_events WHERE event = ?1",
            vec![event.to_string()],
        )
        .await
    }
}

use deputy::clock::Clock;

async fn post<S>(app: &S, path: &str, body: &str) -> (u16, Value)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    json_of(test::call_service(app, form_post(path, body).to_request()).await).await
}

fn creds(id: &str, secret: &str) -> String {
    format!("client_id={id}&client_secret={}", enc(secret))
}

fn poll_body(id: &str, secret: &str, auth_req_id: &str) -> String {
    format!(
        "grant_type={CIBA}&auth_req_id={auth_req_id}&{}",
        creds(id, secret)
    )
}

const GOOD: &str = "scope=openid+notes%3Aread&login_hint=alice&binding_message=W4-7Q\
    &task=triage+inbox&resource=https%3A%2F%2Fapi.example";

/// CIBA Core §7.3: the answer's members, and only those.
fn auth_req_id(status: u16, body: &Value) -> String {
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["auth_req_id", "expires_in", "interval"], "{body}");
    body["auth_req_id"].as_str().unwrap().to_string()
}

fn error(r: &(u16, Value)) -> (u16, &str) {
    (r.0, r.1["error"].as_str().unwrap_or("(none)"))
}

/// CIBA Core §7, §10.1, §11: pending → the person approves → tokens, once.
#[actix_web::test]
async fn pending_then_approved_gives_tokens_once() {
    let env = Env::new();
    let alice = env.person("alice").await;
    let secret = env
        .ciba_agent("agent", &[GrantType::Ciba, GrantType::RefreshToken])
        .await;
    let app = env.app().await;
    let (s, b) = post(
        &app,
        "/bc-authorize",
        &format!("{GOOD}&{}", creds("agent", &secret)),
    )
    .await;
    let id = auth_req_id(s, &b);
    assert_eq!(
        (b["expires_in"].as_i64(), b["interval"].as_i64()),
        (Some(300), Some(5))
    );
    let r = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(error(&r), (400, "authorization_pending"));
    assert!(env.decide(&alice, &id, Decision::Approve).await);
    // Approval is final: a second decision changes nothing.
    assert!(!env.decide(&alice, &id, Decision::Deny).await);
    let (s, t) = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(s, 200, "{t}");
    let (_, at) = peek(t["access_token"].as_str().unwrap());
    assert_eq!(at["sub"], alice.as_str());
    assert_eq!(at["aud"], API);
    assert_eq!(at["task"], "triage inbox");
    assert_eq!(at["scope"], "openid notes:read");
    assert_eq!(at["client_id"], "agent");
    let (_, idt) = peek(t["id_token"].as_str().unwrap());
    assert_eq!(
        (idt["sub"].as_str(), idt["aud"].as_str()),
        (Some(alice.as_str()), Some("agent"))
    );
    // OIDC Core §2: when she signed in (the session she approved in).
    assert_eq!(idt["auth_time"].as_i64(), Some(T0 - 60));
    assert!(t["refresh_token"].is_string());
    // CIBA Core §11: an auth_req_id is redeemed once.
    let r = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(error(&r), (400, "invalid_grant"));
    for e in ["ciba_requested", "ciba_approved", "ciba_redeemed"] {
        assert_eq!(env.events(e).await, 1, "{e}");
    }
    // The trail names the task on each token issued: access, ID, refresh.
    assert_eq!(
        env.count(
            "SELECT count(*) FROM audit_events WHERE event = 'token_issued' \
             AND task = 'triage inbox'"
        )
        .await,
        3
    );
    // The approval was for this request only: no consent is remembered.
    assert_eq!(env.count("SELECT count(*) FROM consent_scopes").await, 0);
}

/// No refresh token for a client not registered for refresh.
#[actix_web::test]
async fn no_refresh_token_without_the_refresh_grant() {
    let env = Env::new();
    let alice = env.person("alice").await;
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let app = env.app().await;
    let (s, b) = post(
        &app,
        "/bc-authorize",
        &format!("{GOOD}&{}", creds("agent", &secret)),
    )
    .await;
    let id = auth_req_id(s, &b);
    assert!(env.decide(&alice, &id, Decision::Approve).await);
    let (s, t) = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(s, 200, "{t}");
    assert!(t.get("refresh_token").is_none(), "{t}");
}

/// CIBA Core §11: the person denies → access_denied (400 at /token).
#[actix_web::test]
async fn denied_is_access_denied() {
    let env = Env::new();
    let alice = env.person("alice").await;
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let app = env.app().await;
    let (s, b) = post(
        &app,
        "/bc-authorize",
        &format!("{GOOD}&{}", creds("agent", &secret)),
    )
    .await;
    let id = auth_req_id(s, &b);
    assert!(env.decide(&alice, &id, Decision::Deny).await);
    let r = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(error(&r), (400, "access_denied"));
    assert_eq!(env.events("ciba_denied").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM tokens").await, 0);
}

/// CIBA Core §11: past its expiry → expired_token; nobody can approve it
/// any more; the expiry is audited once.
#[actix_web::test]
async fn an_expired_request_is_expired_token() {
    let env = Env::new();
    let alice = env.person("alice").await;
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let app = env.app().await;
    let body = format!("{GOOD}&requested_expiry=10&{}", creds("agent", &secret));
    let (s, b) = post(&app, "/bc-authorize", &body).await;
    let id = auth_req_id(s, &b);
    assert_eq!(b["expires_in"], 10);
    env.clock.advance(10);
    assert!(!env.decide(&alice, &id, Decision::Approve).await);
    for _ in 0..2 {
        let r = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
        assert_eq!(error(&r), (400, "expired_token"));
    }
    assert_eq!(env.events("ciba_expired").await, 1);
    // Approved but not redeemed in time: expired too.
    let (s, b) = post(&app, "/bc-authorize", &body).await;
    let id = auth_req_id(s, &b);
    assert!(env.decide(&alice, &id, Decision::Approve).await);
    env.clock.advance(11);
    let r = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(error(&r), (400, "expired_token"));
}

/// CIBA Core §11 (RFC 8628 §3.5): polling faster than the interval is
/// slow_down, and the interval stays 5 s longer from then on.
#[actix_web::test]
async fn slow_down_then_the_raised_interval() {
    let env = Env::new();
    env.person("alice").await;
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let app = env.app().await;
    let (s, b) = post(
        &app,
        "/bc-authorize",
        &format!("{GOOD}&{}", creds("agent", &secret)),
    )
    .await;
    let id = auth_req_id(s, &b);
    let body = poll_body("agent", &secret, &id);
    let poll = || post(&app, "/token", &body);
    assert_eq!(error(&poll().await), (400, "authorization_pending"));
    env.clock.advance(1);
    assert_eq!(error(&poll().await), (400, "slow_down"));
    // The interval is now 10 s from the last poll.
    env.clock.advance(10);
    assert_eq!(error(&poll().await), (400, "authorization_pending"));
    env.clock.advance(5);
    assert_eq!(error(&poll().await), (400, "slow_down"));
    env.clock.advance(15);
    assert_eq!(error(&poll().await), (400, "authorization_pending"));
}

/// CIBA Core §7.3 and §13: an unknown person gets the same answer shape;
/// the request is never shown to anyone and simply expires.
#[actix_web::test]
async fn an_unknown_person_gets_the_same_answer_and_it_expires() {
    let env = Env::new();
    env.person("alice").await;
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let app = env.app().await;
    let body = GOOD.replace("login_hint=alice", "login_hint=nobody");
    let (s, b) = post(
        &app,
        "/bc-authorize",
        &format!("{body}&{}", creds("agent", &secret)),
    )
    .await;
    let id = auth_req_id(s, &b);
    assert_eq!(
        (b["expires_in"].as_i64(), b["interval"].as_i64()),
        (Some(300), Some(5))
    );
    let r = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(error(&r), (400, "authorization_pending"));
    env.clock.advance(300);
    let r = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(error(&r), (400, "expired_token"));
}

/// CIBA Core §7.1, §13: each refusal with its code, and nothing recorded.
#[actix_web::test]
async fn bad_requests_are_refused_with_their_codes() {
    let env = Env::new();
    env.person("alice").await;
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let app = env.app().await;
    let c = creds("agent", &secret);
    let cases = [
        (
            format!("{GOOD}&binding_message={}", "x".repeat(65)),
            "invalid_binding_message",
        ),
        (GOOD.replace("openid+", ""), "invalid_scope"),
        (
            GOOD.replace("login_hint=alice", "id_token_hint=a.b.c&login_hint=alice"),
            "invalid_request",
        ),
        (GOOD.replace("login_hint=alice&", ""), "invalid_request"),
        (
            GOOD.replace("login_hint=alice", "id_token_hint=a.b.c"),
            "invalid_request",
        ),
        (format!("{GOOD}&requested_expiry=0"), "invalid_request"),
        (
            GOOD.replace("api.example", "evil.example"),
            "invalid_target",
        ),
    ];
    for (body, code) in cases {
        let body = body.replace("binding_message=W4-7Q&", "");
        let r = post(&app, "/bc-authorize", &format!("{body}&{c}")).await;
        assert_eq!(error(&r), (400, code), "{body}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM backchannel_requests").await,
        0
    );
}

/// CIBA Core §13 and §11: a client not registered for CIBA is
/// unauthorized_client at both endpoints; a public client is no CIBA client.
#[actix_web::test]
async fn a_client_not_registered_for_ciba_is_refused() {
    let env = Env::new();
    env.person("alice").await;
    let secret = env
        .ciba_agent("other", &[GrantType::ClientCredentials])
        .await;
    env.app_client("web").await;
    let app = env.app().await;
    let r = post(
        &app,
        "/bc-authorize",
        &format!("{GOOD}&{}", creds("other", &secret)),
    )
    .await;
    assert_eq!(error(&r), (400, "unauthorized_client"));
    let r = post(&app, "/token", &poll_body("other", &secret, "whatever")).await;
    assert_eq!(error(&r), (400, "unauthorized_client"));
    let r = post(&app, "/bc-authorize", &format!("{GOOD}&client_id=web")).await;
    assert_eq!(error(&r), (401, "invalid_client"));
    let r = post(&app, "/bc-authorize", GOOD).await;
    assert_eq!(error(&r), (401, "invalid_client"));
}

/// An auth_req_id is the client's own: another client's poll is
/// invalid_grant and spends nothing.
#[actix_web::test]
async fn another_clients_auth_req_id_is_invalid_grant() {
    let env = Env::new();
    let alice = env.person("alice").await;
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let thief = env.ciba_agent("thief", &[GrantType::Ciba]).await;
    let app = env.app().await;
    let (s, b) = post(
        &app,
        "/bc-authorize",
        &format!("{GOOD}&{}", creds("agent", &secret)),
    )
    .await;
    let id = auth_req_id(s, &b);
    assert!(env.decide(&alice, &id, Decision::Approve).await);
    let r = post(&app, "/token", &poll_body("thief", &thief, &id)).await;
    assert_eq!(error(&r), (400, "invalid_grant"));
    let r = post(&app, "/token", &poll_body("agent", &secret, "not-an-id")).await;
    assert_eq!(error(&r), (400, "invalid_grant"));
    let (s, t) = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(s, 200, "{t}");
    // Only the person the request names decides.
    let (s, b) = post(
        &app,
        "/bc-authorize",
        &format!("{GOOD}&{}", creds("agent", &secret)),
    )
    .await;
    let id = auth_req_id(s, &b);
    let bob = env.person("bob").await;
    assert!(!env.decide(&bob, &id, Decision::Approve).await);
}

/// CIBA Core §11: 20 concurrent polls after approval → exactly one set of
/// tokens; the others are invalid_grant.
#[actix_web::test]
async fn twenty_concurrent_polls_after_approval_redeem_once() {
    let env = Env::new();
    let alice = env.person("alice").await;
    let secret = env
        .ciba_agent("agent", &[GrantType::Ciba, GrantType::RefreshToken])
        .await;
    let app = env.app().await;
    let (s, b) = post(
        &app,
        "/bc-authorize",
        &format!("{GOOD}&{}", creds("agent", &secret)),
    )
    .await;
    let id = auth_req_id(s, &b);
    assert!(env.decide(&alice, &id, Decision::Approve).await);
    let body = poll_body("agent", &secret, &id);
    let polls: Vec<_> = (0..20).map(|_| post(&app, "/token", &body)).collect();
    let results = futures_util::future::join_all(polls).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(results
        .iter()
        .filter(|(s, _)| *s != 200)
        .all(|r| error(r) == (400, "invalid_grant")));
    assert_eq!(env.events("ciba_redeemed").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM refresh_tokens").await, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM tokens WHERE kind = 'access'")
            .await,
        1
    );
}

/// An auth_req_id is redeemed once across restarts too: the approval made
/// before a restart is redeemed after it, and a replay after a further
/// restart is still invalid_grant (its state is the database's, not the
/// process's).
#[actix_web::test]
async fn an_auth_req_id_is_redeemed_once_across_restarts() {
    let dir = temp_dir();
    let (secret, id);
    {
        let env = Env::in_dir(dir.clone(), T0);
        let alice = env.person("alice").await;
        secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
        let app = env.app().await;
        let (s, b) = post(
            &app,
            "/bc-authorize",
            &format!("{GOOD}&{}", creds("agent", &secret)),
        )
        .await;
        id = auth_req_id(s, &b);
        assert!(env.decide(&alice, &id, Decision::Approve).await);
    }
    {
        let env = Env::in_dir(dir.clone(), T0 + 10);
        let app = env.app().await;
        let (s, b) = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
        assert_eq!(s, 200, "{b}");
        assert!(b["access_token"].is_string() && b["id_token"].is_string());
    }
    let env = Env::in_dir(dir, T0 + 20);
    let app = env.app().await;
    let r = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(error(&r), (400, "invalid_grant"));
    assert_eq!(env.events("ciba_redeemed").await, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM tokens WHERE kind = 'access'")
            .await,
        1
    );
}

/// The person approves on the page: signed in, with the page's CSRF
/// token; the listing is audited once as shown.
#[actix_web::test]
async fn the_person_approves_on_the_page() {
    let env = Env::new();
    env.person("alice").await;
    env.app_client("web").await;
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let app = env.app().await;
    let (s, b) = post(
        &app,
        "/bc-authorize",
        &format!("{GOOD}&{}", creds("agent", &secret)),
    )
    .await;
    let id = auth_req_id(s, &b);
    // The old address leads to the account page; not signed in, that is a
    // sign-in first.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/account/requests")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers().get("location").unwrap(), "/account");
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/account").to_request()).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert!(!body_text(resp).await.contains("W4-7Q"));
    let mut browser = Browser::default();
    sign_in(&app, &mut browser, "web", "alice", "").await;
    let page = |b: &Browser| {
        test::TestRequest::get()
            .uri("/account")
            .insert_header(("Cookie", b.header()))
            .to_request()
    };
    let html = body_text(test::call_service(&app, page(&browser)).await).await;
    for shown in ["agent", "triage inbox", "W4-7Q", API, "openid notes:read"] {
        assert!(html.contains(shown), "{shown} in {html}");
    }
    let handle = env.handle(&id).await;
    assert!(html.contains(&handle));
    assert!(
        !html.contains(&id),
        "the auth_req_id never reaches the page"
    );
    let csrf = hidden(&html, "csrf");
    test::call_service(&app, page(&browser)).await;
    assert_eq!(env.events("ciba_shown").await, 1);
    let decide = |csrf: &str| {
        form_post(
            &format!("/account/requests/{handle}"),
            &format!("csrf={csrf}&decision=approve"),
        )
        .insert_header(("Cookie", browser.header()))
        .to_request()
    };
    let resp = test::call_service(&app, decide("forged")).await;
    assert_eq!(resp.status().as_u16(), 403);
    let r = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(error(&r), (400, "authorization_pending"));
    // Approved later than she signed in: the ID token says when she signed in.
    env.clock.advance(100);
    let resp = test::call_service(&app, decide(&csrf)).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(body_text(resp)
        .await
        .contains("Approved: the application can now obtain access"));
    let resp = test::call_service(&app, decide(&csrf)).await;
    assert_eq!(resp.status().as_u16(), 404, "decided once");
    let (s, t) = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        peek(t["id_token"].as_str().unwrap()).1["auth_time"].as_i64(),
        Some(T0)
    );
    let html = body_text(test::call_service(&app, page(&browser)).await).await;
    assert!(!html.contains(&handle), "no longer waiting");
}

/// CIBA Core §4: discovery advertises the endpoint, poll mode and the grant.
#[actix_web::test]
async fn discovery_advertises_ciba() {
    let env = Env::new();
    let app = env.app().await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/.well-known/openid-configuration")
            .to_request(),
    )
    .await;
    let (_, m) = json_of(resp).await;
    assert_eq!(
        m["backchannel_authentication_endpoint"],
        format!("{ISSUER}/bc-authorize")
    );
    assert_eq!(
        m["backchannel_token_delivery_modes_supported"],
        serde_json::json!(["poll"])
    );
    assert_eq!(m["backchannel_user_code_parameter_supported"], false);
    assert!(m["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("urn:openid:params:grant-type:ciba")));
}

/// A removed client's requests end with it: the same id registered again
/// redeems nothing the old client was approved for.
#[actix_web::test]
async fn a_removed_client_leaves_no_request_to_redeem() {
    let env = Env::new();
    let alice = env.person("alice").await;
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let app = env.app().await;
    let (s, b) = post(
        &app,
        "/bc-authorize",
        &format!("{GOOD}&{}", creds("agent", &secret)),
    )
    .await;
    let id = auth_req_id(s, &b);
    assert!(env.decide(&alice, &id, Decision::Approve).await);
    let out = env
        .cli()
        .args(["client", "remove", "agent"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let r = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
    assert_eq!(error(&r), (400, "expired_token"));
    assert_eq!(env.count("SELECT count(*) FROM tokens").await, 0);
}

/// Review finding: an approved (or pending) request yields nothing once the
/// person withdraws the agent, stops its task or signs out everywhere, or
/// an operator revokes the person or the agent for them.
#[actix_web::test]
async fn withdrawing_ends_approved_and_pending_requests() {
    use deputy::account::withdraw;
    use deputy::admin::{Origin, Selector};
    let env = Env::new();
    let alice = env.person("alice").await;
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let app = env.app().await;
    type Withdraw =
        Box<dyn Fn(&dyn deputy::store::Db, &str) -> deputy::store::StoreResult<()> + Send>;
    let ways: Vec<(&str, Withdraw)> = vec![
        (
            "client",
            Box::new(move |c, who| {
                withdraw::client(c, who, "agent", &Origin::Cli, T0)
                    .map(|w| assert_eq!(w.requests, 2, "both requests counted"))
            }),
        ),
        (
            "task",
            Box::new(move |c, who| {
                withdraw::task(c, who, "agent", "triage inbox", &Origin::Cli, T0)
                    .map(|w| assert_eq!(w.requests, 2, "both requests counted"))
            }),
        ),
        (
            "everywhere",
            Box::new(move |c, who| {
                withdraw::everywhere(c, who, &Origin::Cli, T0)
                    .map(|o| assert_eq!(o.requests, 2, "both requests counted"))
            }),
        ),
        (
            "revoke --sub",
            Box::new(move |c, who| {
                deputy::admin::revoke::revoke(c, &Selector::Sub(who.to_string()), &Origin::Cli, T0)
                    .map(drop)
            }),
        ),
        (
            "revoke --actor --sub",
            Box::new(move |c, who| {
                deputy::admin::revoke::revoke(
                    c,
                    &Selector::Actor("agent".into(), Some(who.to_string())),
                    &Origin::Cli,
                    T0,
                )
                .map(drop)
            }),
        ),
    ];
    for (how, w) in ways {
        // One approved request and one still pending.
        let mut ids = Vec::new();
        for _ in 0..2 {
            let (s, b) = post(
                &app,
                "/bc-authorize",
                &format!("{GOOD}&{}", creds("agent", &secret)),
            )
            .await;
            ids.push(auth_req_id(s, &b));
        }
        assert!(
            env.decide(&alice, &ids[0], Decision::Approve).await,
            "{how}"
        );
        let who = alice.clone();
        env.state.store.write(move |c| w(c, &who)).await.unwrap();
        for id in &ids {
            let r = post(&app, "/token", &poll_body("agent", &secret, id)).await;
            assert_eq!(error(&r), (400, "access_denied"), "{how}");
        }
        assert!(
            !env.decide(&alice, &ids[1], Decision::Approve).await,
            "{how}: nothing left to approve"
        );
    }
}

/// A request already expired when the person withdraws the agent stays
/// expired: it is not counted as withdrawn, and its poll still answers
/// expired_token (CIBA Core §11), not access_denied.
#[actix_web::test]
async fn withdrawing_leaves_expired_requests_expired() {
    use deputy::account::withdraw;
    use deputy::admin::Origin;
    let env = Env::new();
    let alice = env.person("alice").await;
    let secret = env.ciba_agent("agent", &[GrantType::Ciba]).await;
    let app = env.app().await;
    let ask = format!("{GOOD}&requested_expiry=10&{}", creds("agent", &secret));
    let (s, b) = post(&app, "/bc-authorize", &ask).await;
    let old = auth_req_id(s, &b);
    env.clock.advance(11);
    let (s, b) = post(&app, "/bc-authorize", &ask).await;
    let live = auth_req_id(s, &b);
    let (who, now) = (alice.clone(), env.clock.now());
    let done = env
        .state
        .store
        .write(move |c| withdraw::client(c, &who, "agent", &Origin::Cli, now))
        .await
        .unwrap();
    assert_eq!(done.requests, 1, "only the live request");
    let r = post(&app, "/token", &poll_body("agent", &secret, &old)).await;
    assert_eq!(error(&r), (400, "expired_token"));
    let r = post(&app, "/token", &poll_body("agent", &secret, &live)).await;
    assert_eq!(error(&r), (400, "access_denied"));
}

/// A refresh family issued for a CIBA request keeps its task: the refreshed
/// access token names it (the audit trail still answers "which task"), the
/// account page offers the task for withdrawal, and stopping the task ends
/// the family (the refresh token then answers invalid_grant, RFC 6749 §5.2)
/// and its access tokens — not the person's other access.
#[actix_web::test]
async fn a_ciba_refresh_family_keeps_and_ends_with_its_task() {
    use deputy::account::withdraw;
    use deputy::admin::Origin;
    let env = Env::new();
    let alice = env.person("alice").await;
    let secret = env
        .ciba_agent("agent", &[GrantType::Ciba, GrantType::RefreshToken])
        .await;
    let app = env.app().await;
    // Two approved requests: one for the task, one for another task.
    let mut refresh = Vec::new();
    for task in ["triage+inbox", "file+taxes"] {
        let body = GOOD.replace("triage+inbox", task);
        let (s, b) = post(
            &app,
            "/bc-authorize",
            &format!("{body}&{}", creds("agent", &secret)),
        )
        .await;
        let id = auth_req_id(s, &b);
        assert!(env.decide(&alice, &id, Decision::Approve).await);
        let (s, t) = post(&app, "/token", &poll_body("agent", &secret, &id)).await;
        assert_eq!(s, 200, "{t}");
        refresh.push(t["refresh_token"].as_str().unwrap().to_string());
    }
    let refresh_body = |rt: &str| {
        format!(
            "grant_type=refresh_token&refresh_token={rt}&{}",
            creds("agent", &secret)
        )
    };
    let (s, t) = post(&app, "/token", &refresh_body(&refresh[0])).await;
    assert_eq!(s, 200, "{t}");
    let (_, at) = peek(t["access_token"].as_str().unwrap());
    assert_eq!(at["task"], "triage inbox", "refreshed, still the task's");
    assert_eq!(
        env.count_with(
            "SELECT count(*) FROM audit_events WHERE event = 'token_issued' AND jti = ?1 \
             AND task = 'triage inbox'",
            vec![at["jti"].as_str().unwrap().to_string()],
        )
        .await,
        1,
        "the refreshed token's event names the task"
    );
    let refreshed_jti = at["jti"].as_str().unwrap().to_string();
    let next = t["refresh_token"].as_str().unwrap().to_string();
    // Introspection of the family's refresh token names its task too.
    let (s, i) = post(
        &app,
        "/introspect",
        &format!("token={next}&{}", creds("agent", &secret)),
    )
    .await;
    assert_eq!(s, 200, "{i}");
    assert_eq!(
        (&i["active"], &i["token_type"], &i["task"]),
        (
            &Value::Bool(true),
            &Value::from("refresh_token"),
            &Value::from("triage inbox")
        )
    );
    // The account page's holdings offer both tasks.
    let who = alice.clone();
    let holdings = env
        .state
        .store
        .read(move |c| deputy::account::holdings(c, &who, T0))
        .await
        .unwrap();
    let agent = holdings
        .clients
        .iter()
        .find(|c| c.client_id == "agent")
        .unwrap();
    let mut tasks = agent.tasks.clone();
    tasks.sort();
    assert_eq!(tasks, ["file taxes", "triage inbox"]);
    assert_eq!(agent.families.len(), 2);
    // Stop the task: its family and the tokens under it end, nothing else.
    let who = alice.clone();
    let ended = env
        .state
        .store
        .write(move |c| withdraw::task(c, &who, "agent", "triage inbox", &Origin::Cli, T0))
        .await
        .unwrap();
    assert_eq!(ended.requests, 0, "the redeemed request is not withdrawn");
    let ended = ended.revoked;
    // Every token recorded under the task's grant (access, ID and refresh
    // tokens, the refreshed ones too), and no other.
    const LEFT_LIVE: &str = "SELECT count(*) FROM tokens WHERE revoked_at IS NULL AND grant_id = \
         (SELECT family_id FROM refresh_tokens WHERE task = 'triage inbox' LIMIT 1)";
    const ENDED_HERE: &str = "SELECT count(*) FROM tokens WHERE revoked_reason = 'task_withdrawn' \
         AND grant_id = (SELECT family_id FROM refresh_tokens WHERE task = 'triage inbox' LIMIT 1)";
    assert_eq!(env.count(LEFT_LIVE).await, 0);
    assert_eq!(env.count(ENDED_HERE).await, ended as i64);
    assert!(
        ended >= 3,
        "two access tokens and the live refresh token: {ended}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM tokens WHERE revoked_reason = 'task_withdrawn'")
            .await,
        ended as i64
    );
    let r = post(&app, "/token", &refresh_body(&next)).await;
    assert_eq!(error(&r), (400, "invalid_grant"));
    assert_eq!(
        env.count_with(
            "SELECT count(*) FROM tokens WHERE jti = ?1 AND revoked_at IS NOT NULL",
            vec![refreshed_jti],
        )
        .await,
        1
    );
    let (s, t) = post(&app, "/token", &refresh_body(&refresh[1])).await;
    assert_eq!(s, 200, "the other task's family lives on: {t}");
    let (_, at) = peek(t["access_token"].as_str().unwrap());
    assert_eq!(at["task"], "file taxes");
}
