//! Budgets against guessing and exhaustion: failed client authentications
//! (per client id and per address), the per-client token limit of public
//! clients (per address), and throttled logins in the audit trail (one event
//! per burst).

use std::net::SocketAddr;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use base64::Engine;
use deputy::model::{AuthMethod, ClientKind, GrantType};

use crate::support::*;

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

fn from(ip: &str) -> SocketAddr {
    format!("{ip}:40000").parse().unwrap()
}

/// A client credentials request with HTTP Basic from `ip`.
fn cc(id: &str, secret: &str, ip: &str) -> actix_http::Request {
    form_post("/token", "grant_type=client_credentials")
        .insert_header(("Authorization", basic(id, secret)))
        .peer_addr(from(ip))
        .to_request()
}

/// Status, `error` and `Retry-After` of an answer.
async fn outcome(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
    req: actix_http::Request,
) -> (u16, Option<String>, Option<String>) {
    let resp = test::call_service(app, req).await;
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let (status, body) = json_of(resp).await;
    (status, body["error"].as_str().map(str::to_string), retry)
}

fn refused_401() -> (u16, Option<String>, Option<String>) {
    (401, Some("invalid_client".to_string()), None)
}

fn limited(retry: &str) -> (u16, Option<String>, Option<String>) {
    (
        429,
        Some("temporarily_unavailable".to_string()),
        Some(retry.to_string()),
    )
}

const BAD: &str = "not-the-secret-at-all-not-the-secret-at-all";

#[actix_web::test]
async fn failed_client_authentications_from_one_address_are_429_after_twenty() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let other = env
        .secret_service("other", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    for i in 0..20 {
        assert_eq!(
            outcome(&app, cc("svc", BAD, "203.0.113.5")).await,
            refused_401(),
            "failure {i}"
        );
    }
    env.clock.advance(3);
    // The 21st failure within the 10 s window: 429 until the window ends.
    assert_eq!(
        outcome(&app, cc("svc", BAD, "203.0.113.5")).await,
        limited("7")
    );
    // The right secret from the same address still works at once.
    assert_eq!(
        outcome(&app, cc("svc", &secret, "203.0.113.5")).await.0,
        200
    );
    // The address's budget is spent for any client id it names...
    assert_eq!(
        outcome(&app, cc("no-such-client", BAD, "203.0.113.5")).await,
        limited("7")
    );
    assert_eq!(
        outcome(&app, cc("other", &other, "203.0.113.5")).await.0,
        200
    );
    // ...and not for another address naming another client.
    assert_eq!(
        outcome(&app, cc("other", BAD, "198.51.100.7")).await,
        refused_401()
    );
    // The window ends: failures are 401 again.
    env.clock.advance(7);
    assert_eq!(
        outcome(&app, cc("svc", BAD, "203.0.113.5")).await,
        refused_401()
    );
}

#[actix_web::test]
async fn a_client_ids_failure_budget_counts_across_addresses() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretPost)
        .await;
    let app = env.app().await;
    let post = |secret: &str, ip: &str| {
        form_post(
            "/token",
            &format!("grant_type=client_credentials&client_id=svc&client_secret={secret}"),
        )
        .peer_addr(from(ip))
        .to_request()
    };
    // 20 addresses, one failure each: each address is far within its budget.
    for i in 0..20 {
        assert_eq!(
            outcome(&app, post(BAD, &format!("192.0.2.{i}"))).await,
            refused_401()
        );
    }
    assert_eq!(
        outcome(&app, post(BAD, "192.0.2.200")).await,
        limited("10"),
        "the 21st failure for client id svc, from a fresh address"
    );
    assert_eq!(outcome(&app, post(&secret, "192.0.2.201")).await.0, 200);
    // Unknown client ids have a budget of their own, as does a public
    // client id that does not exist.
    let unknown = |ip: &str| {
        form_post(
            "/token",
            "grant_type=authorization_code&code=x&client_id=ghost",
        )
        .peer_addr(from(ip))
        .to_request()
    };
    for i in 0..20 {
        assert_eq!(
            outcome(&app, unknown(&format!("192.0.2.{i}"))).await,
            refused_401()
        );
    }
    assert_eq!(outcome(&app, unknown("192.0.2.250")).await, limited("10"));
}

#[actix_web::test]
async fn failed_assertions_count_per_client_id_and_a_valid_assertion_passes() {
    let env = Env::new();
    let kp = env.jwt_service("jwtsvc").await;
    let app = env.app().await;
    let now = deputy::clock::Clock::now(env.clock.as_ref());
    let form = |assertion: &str| {
        format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}",
            enc("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        )
    };
    let other = josekit::jws::ES256.generate_key_pair().unwrap();
    for i in 0..20 {
        // Signed with a key that is not the client's.
        let forged = assertion(
            &other,
            std_claims("jwtsvc", now, &format!("f{i}")),
            serde_json::json!({}),
        );
        let req = form_post("/token", &form(&forged))
            .peer_addr(from(&format!("192.0.2.{i}")))
            .to_request();
        assert_eq!(outcome(&app, req).await, refused_401());
    }
    let forged = assertion(
        &other,
        std_claims("jwtsvc", now, "f20"),
        serde_json::json!({}),
    );
    let req = form_post("/token", &form(&forged))
        .peer_addr(from("192.0.2.100"))
        .to_request();
    assert_eq!(outcome(&app, req).await, limited("10"));
    let genuine = assertion(&kp, std_claims("jwtsvc", now, "ok"), serde_json::json!({}));
    let req = form_post("/token", &form(&genuine))
        .peer_addr(from("192.0.2.100"))
        .to_request();
    assert_eq!(outcome(&app, req).await.0, 200);
}

#[actix_web::test]
async fn introspection_and_revocation_share_the_failure_budget() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = |path: &str, secret: &str| {
        form_post(path, "token=whatever")
            .insert_header(("Authorization", basic("svc", secret)))
            .peer_addr(from("203.0.113.9"))
            .to_request()
    };
    for i in 0..10 {
        assert_eq!(outcome(&app, at("/introspect", BAD)).await, refused_401());
        assert_eq!(
            outcome(&app, at("/revoke", BAD)).await,
            refused_401(),
            "{i}"
        );
    }
    assert_eq!(outcome(&app, at("/introspect", BAD)).await, limited("10"));
    assert_eq!(outcome(&app, at("/revoke", BAD)).await, limited("10"));
    assert_eq!(
        outcome(&app, cc("svc", BAD, "203.0.113.9")).await,
        limited("10")
    );
    // The right secret is answered as usual at both.
    let (status, _, _) = outcome(&app, at("/introspect", &secret)).await;
    assert_eq!(status, 200);
    let (status, _, _) = outcome(&app, at("/revoke", &secret)).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn the_failure_budget_can_be_turned_off() {
    let dir = temp_dir();
    let mut settings = settings_in(&dir);
    settings.auth_failure_limit = 0;
    let env = Env::with_settings(dir, settings, T0);
    env.secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    for _ in 0..30 {
        assert_eq!(
            outcome(&app, cc("svc", BAD, "203.0.113.5")).await,
            refused_401()
        );
    }
}

#[actix_web::test]
async fn a_public_clients_token_limit_is_kept_per_address() {
    let dir = temp_dir();
    let mut settings = settings_in(&dir);
    settings.rate_limit_client = 2;
    let env = Env::with_settings(dir, settings, T0);
    let mut c = client("spa", ClientKind::App, AuthMethod::None);
    c.grant_types = vec![GrantType::AuthorizationCode];
    env.add_client(c).await;
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let public = |ip: &str| {
        form_post(
            "/token",
            "grant_type=authorization_code&client_id=spa&code=nope&code_verifier=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv&redirect_uri=https%3A%2F%2Fapp.example%2Fcb",
        )
        .peer_addr(from(ip))
        .to_request()
    };
    let grant_refused = (400, Some("invalid_grant".to_string()), None);
    // Someone at one address uses up what the limit allows client id spa there.
    assert_eq!(outcome(&app, public("198.51.100.1")).await, grant_refused);
    assert_eq!(outcome(&app, public("198.51.100.1")).await, grant_refused);
    assert_eq!(outcome(&app, public("198.51.100.1")).await, limited("1"));
    // The same public client from another address is not refused.
    assert_eq!(outcome(&app, public("198.51.100.2")).await, grant_refused);
    // A confidential client's limit is still one per client, any address.
    assert_eq!(
        outcome(&app, cc("svc", &secret, "198.51.100.1")).await.0,
        200
    );
    assert_eq!(
        outcome(&app, cc("svc", &secret, "198.51.100.2")).await.0,
        200
    );
    assert_eq!(
        outcome(&app, cc("svc", &secret, "198.51.100.3")).await,
        limited("1")
    );
}

/// The login form of a fresh interaction: (interaction, csrf, cookie header).
async fn login_form(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
) -> (String, String, String) {
    use crate::people::*;
    let resp = test::call_service(
        app,
        test::TestRequest::get()
            .uri(&authorize_query("web", ""))
            .to_request(),
    )
    .await;
    let mut browser = Browser::default();
    browser.absorb(&resp);
    let html = body_text(resp).await;
    (
        hidden(&html, "interaction"),
        hidden(&html, "csrf"),
        browser.header(),
    )
}

/// (person, client_id, detail) of the `login_throttled` events.
async fn throttled_events(env: &Env) -> Vec<(Option<String>, Option<String>, serde_json::Value)> {
    env.state
        .store
        .read(|c| {
            c.query(
                "SELECT person, client_id, detail FROM audit_events \
                 WHERE event = 'login_throttled' AND mode = 'person' AND outcome = 'refused' \
                 ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| {
                let detail: String = r.get(2)?;
                Ok((r.get(0)?, r.get(1)?, serde_json::from_str(&detail).unwrap()))
            })
            .collect()
        })
        .await
        .unwrap()
}

#[actix_web::test]
async fn throttled_logins_are_one_audit_event_per_burst() {
    let env = Env::new();
    env.app_client("web").await;
    let alice = env.person("alice").await;
    let app = env.app().await;
    let (i, csrf, cookie) = login_form(&app).await;
    let attempt = |user: &str, pw: &str, ip: &str| {
        form_post(
            "/login",
            &format!("interaction={i}&csrf={csrf}&username={user}&password={pw}"),
        )
        .insert_header(("Cookie", cookie.clone()))
        .peer_addr(from(ip))
        .to_request()
    };
    // Five failures lock alice's account.
    for _ in 0..5 {
        let s = test::call_service(&app, attempt("alice", "nope", "203.0.113.1")).await;
        assert_eq!(s.status().as_u16(), 401);
    }
    // 50 throttled attempts over 4 s, among them the right password.
    for n in 0..50 {
        if n % 13 == 12 {
            env.clock.advance(1);
        }
        let pw = if n == 25 {
            enc(crate::people::PASSWORD)
        } else {
            "guess".to_string()
        };
        let s = test::call_service(&app, attempt("alice", &pw, "203.0.113.1")).await;
        assert_eq!(s.status().as_u16(), 429, "attempt {n}");
    }
    let last = T0 + 3;
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE event = 'login_failed'")
            .await,
        5,
        "no row per throttled attempt"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE detail LIKE '%\"throttled\":true%'")
            .await,
        0
    );
    // Before the quiet period has passed: nothing yet.
    env.clock.advance(9);
    assert_eq!(env.state.flush_throttled(last + 9).await.unwrap(), 0);
    assert!(throttled_events(&env).await.is_empty());
    env.clock.advance(1);
    assert_eq!(env.state.flush_throttled(last + 10).await.unwrap(), 1);
    assert_eq!(
        throttled_events(&env).await,
        vec![(
            Some(alice.clone()),
            Some("web".to_string()),
            serde_json::json!({"address": "203.0.113.1", "username_known": true,
                               "count": 50, "first_at": T0, "last_at": last})
        )]
    );
    // Flushed once: a later flush writes nothing more.
    assert_eq!(env.state.flush_throttled(last + 100).await.unwrap(), 0);
}

#[actix_web::test]
async fn throttled_unknown_names_are_one_burst_without_the_name() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let (i, csrf, cookie) = login_form(&app).await;
    let attempt = |user: &str| {
        form_post(
            "/login",
            &format!("interaction={i}&csrf={csrf}&username={user}&password=pw"),
        )
        .insert_header(("Cookie", cookie.clone()))
        .peer_addr(from("203.0.113.2"))
        .to_request()
    };
    // 20 failures for 20 names lock the address; then 30 names, all throttled.
    for n in 0..20 {
        let s = test::call_service(&app, attempt(&format!("name{n}"))).await;
        assert_eq!(s.status().as_u16(), 401);
    }
    for n in 0..30 {
        let s = test::call_service(&app, attempt(&format!("secret-typed-{n}"))).await;
        assert_eq!(s.status().as_u16(), 429);
    }
    assert_eq!(
        env.state.flush_throttled(T0 + QUIET_PERIOD).await.unwrap(),
        1
    );
    let events = throttled_events(&env).await;
    assert_eq!(
        events,
        vec![(
            None,
            Some("web".to_string()),
            serde_json::json!({"address": "203.0.113.2", "username_known": false,
                               "count": 30, "first_at": T0, "last_at": T0})
        )]
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE detail LIKE '%secret-typed%'")
            .await,
        0
    );
}

const QUIET_PERIOD: i64 = deputy::login::throttled::QUIET;

/// Issue 13: an account's failed logins are counted in the database, so two
/// instances on one database share them — N instances do not give N times
/// the free guesses — and a restart keeps them. The table names no one.
#[actix_web::test]
async fn an_accounts_failed_logins_count_across_instances_and_restarts() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let settings = env.state.settings.as_ref().clone();
    let other = Env::with_settings(env.dir.clone(), settings.clone(), T0);
    let (a, b) = (env.app().await, other.app().await);
    let (i, csrf, cookie) = login_form(&a).await;
    let attempt = |pw: &str, ip: &str| {
        // Failures as "Alice": the count is one however the name is written.
        let user = if pw == "nope" { "Alice" } else { "alice" };
        form_post(
            "/login",
            &format!("interaction={i}&csrf={csrf}&username={user}&password={pw}"),
        )
        .insert_header(("Cookie", cookie.clone()))
        .peer_addr(from(ip))
        .to_request()
    };
    // Five failures, alternating instances and addresses (so no address
    // limit is near), lock the account on both instances.
    for n in 0..5 {
        let ip = format!("198.51.100.{}", 10 + n);
        let resp = if n % 2 == 0 {
            test::call_service(&a, attempt("nope", &ip)).await
        } else {
            test::call_service(&b, attempt("nope", &ip)).await
        };
        assert_eq!(resp.status().as_u16(), 401, "attempt {n}");
    }
    let right = enc(crate::people::PASSWORD);
    let on_a = test::call_service(&a, attempt(&right, "198.51.100.40")).await;
    let on_b = test::call_service(&b, attempt(&right, "198.51.100.41")).await;
    assert_eq!(on_a.status().as_u16(), 429);
    assert_eq!(on_b.status().as_u16(), 429);
    assert_eq!(
        on_b.headers().get("retry-after").unwrap().to_str().unwrap(),
        "5"
    );
    assert_eq!(env.count("SELECT count(*) FROM login_failures").await, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM login_failures WHERE lower(account) LIKE '%alice%'")
            .await,
        0,
        "the account is a keyed hash, not the name"
    );
    // A restarted instance still makes alice wait.
    drop((a, b, other));
    let env = Env::with_settings(env.dir.clone(), settings.clone(), T0 + 1);
    let other = Env::with_settings(env.dir.clone(), settings, T0 + 1);
    let (a, b) = (env.app().await, other.app().await);
    let resp = test::call_service(&a, attempt(&right, "198.51.100.42")).await;
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers().get("retry-after").unwrap().to_str().unwrap(),
        "4"
    );
    // After the wait, the right password on one instance clears the count
    // for both: four more failures on the other are plain failures.
    env.clock.advance(4);
    other.clock.advance(4);
    let resp = test::call_service(&b, attempt(&right, "198.51.100.43")).await;
    assert_eq!(resp.status().as_u16(), 200, "the consent page");
    assert_eq!(env.count("SELECT count(*) FROM login_failures").await, 0);
    for n in 0..4 {
        let resp = test::call_service(&a, attempt("nope", "198.51.100.44")).await;
        assert_eq!(resp.status().as_u16(), 401, "attempt {n} after success");
    }
}
