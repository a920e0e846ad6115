//! ID tokens as hints about the browser's session: `id_token_hint` at
//! /authorize (OIDC Core §3.1.2.1) and at /logout (RP-Initiated Logout 1.0 §2).

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;

use deputy::model::{AuthMethod, ClientKind, GrantType};

use crate::people::*;
use crate::support::*;

/// Sign `username` in with `browser` and return the token response.
async fn tokens<S>(app: &S, browser: &mut Browser, username: &str) -> serde_json::Value
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let code = sign_in(app, browser, "web", username, "").await;
    let (status, body) = redeem(app, "web", &code, "").await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn call<S>(app: &S, browser: &mut Browser, uri: &str) -> ServiceResponse
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let resp = test::call_service(
        app,
        test::TestRequest::get()
            .uri(uri)
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    browser.absorb(&resp);
    resp
}

/// Refresh `tokens`' refresh token at client `web`; the new ID token.
async fn refreshed_id_token<S>(app: &S, tokens: &serde_json::Value) -> String
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let body = format!(
        "grant_type=refresh_token&client_id=web&refresh_token={}",
        tokens["refresh_token"].as_str().unwrap()
    );
    let (status, refreshed) =
        json_of(test::call_service(app, form_post("/token", &body).to_request()).await).await;
    assert_eq!(status, 200, "{refreshed}");
    refreshed["id_token"].as_str().unwrap().to_string()
}

fn logout_uri(hint: &str) -> String {
    format!("/logout?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Fapp.example%2Fbye")
}

async fn assert_asks(resp: ServiceResponse, what: &str) {
    assert_eq!(resp.status().as_u16(), 200, "{what}");
    assert!(resp.headers().get("location").is_none(), "{what}");
    assert!(
        body_text(resp).await.contains("name=\"confirm\""),
        "{what}: the confirmation page"
    );
}

#[actix_web::test]
async fn a_hint_from_an_ended_session_asks_before_logging_out_rp_initiated_logout_s2() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    let old = tokens(&app, &mut browser, "alice").await;
    let old_hint = old["id_token"].as_str().unwrap().to_string();
    let resp = call(&app, &mut browser, &logout_uri(&old_hint)).await;
    assert_eq!(resp.status().as_u16(), 303);
    // A new session for the same person, later.
    env.clock.advance(600);
    let new = tokens(&app, &mut browser, "alice").await;
    // The expired hint of the ended session: the OP asks, the session lives on.
    let resp = call(&app, &mut browser, &logout_uri(&old_hint)).await;
    assert_asks(resp, "old session's hint").await;
    assert_eq!(env.count("SELECT count(*) FROM sessions").await, 1);
    // A refreshed ID token keeps the session's auth_time: it matches, even
    // once expired (RP-Initiated Logout 1.0 §2 allows an expired hint).
    let hint = refreshed_id_token(&app, &new).await;
    env.clock.advance(env.state.settings.id_token_ttl + 1);
    let resp = call(&app, &mut browser, &logout_uri(&hint)).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        location(&resp).as_str(),
        "https://app.example/bye",
        "logged out at once"
    );
    assert_eq!(env.count("SELECT count(*) FROM sessions").await, 0);
}

/// Two sessions of the same person in the same second have the same
/// auth_time; the ID token's `sid` still tells them apart (OIDC Front-Channel
/// Logout 1.0 §3 claim), and refreshed ID tokens keep the session's sid.
#[actix_web::test]
async fn sid_tells_apart_two_sessions_started_in_the_same_second() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    let old = tokens(&app, &mut browser, "alice").await;
    let old_hint = old["id_token"].as_str().unwrap().to_string();
    let old_sid = peek(&old_hint).1["sid"].as_str().unwrap().to_string();
    assert!(old_sid.len() >= 22, "{old_sid}");
    assert_eq!(
        call(&app, &mut browser, &logout_uri(&old_hint))
            .await
            .status()
            .as_u16(),
        303
    );
    // The clock does not move: the new login has the same auth_time.
    let new = tokens(&app, &mut browser, "alice").await;
    let new_hint = new["id_token"].as_str().unwrap();
    assert_eq!(
        peek(new_hint).1["auth_time"],
        peek(&old_hint).1["auth_time"]
    );
    assert_ne!(peek(new_hint).1["sid"].as_str().unwrap(), old_sid);
    assert_asks(
        call(&app, &mut browser, &logout_uri(&old_hint)).await,
        "same-second old hint",
    )
    .await;
    // The refreshed ID token carries the new session's sid, and logs out at once.
    let hint = refreshed_id_token(&app, &new).await;
    assert_eq!(peek(&hint).1["sid"], peek(new_hint).1["sid"]);
    let resp = call(&app, &mut browser, &logout_uri(&hint)).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(env.count("SELECT count(*) FROM sessions").await, 0);
}

#[actix_web::test]
async fn authorize_refuses_a_hint_that_is_not_ours_oidc_core_s3_1_2_1() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let t = tokens(&app, &mut Browser::default(), "alice").await;
    let id = t["id_token"].as_str().unwrap();
    let tampered = format!("{}AAAA", &id[..id.len() - 4]);
    let access = t["access_token"].as_str().unwrap();
    for hint in ["garbage", tampered.as_str(), access] {
        let resp = call(
            &app,
            &mut Browser::default(),
            &authorize_query("web", &format!("&id_token_hint={hint}")),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 303, "{hint}");
        let loc = location(&resp);
        assert!(loc.as_str().starts_with(REDIRECT));
        assert_eq!(query(&loc, "error").as_deref(), Some("invalid_request"));
        assert_eq!(query(&loc, "state").as_deref(), Some("st-1"));
        assert_eq!(query(&loc, "iss").as_deref(), Some(ISSUER));
    }
}

#[actix_web::test]
async fn authorize_hint_for_another_person_needs_a_new_login_oidc_core_s3_1_2_1() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    env.person("bob").await;
    let app = env.app().await;
    let bob = tokens(&app, &mut Browser::default(), "bob").await;
    let bob_hint = bob["id_token"].as_str().unwrap().to_string();
    let mut browser = Browser::default();
    let alice = tokens(&app, &mut browser, "alice").await;
    let alice_hint = alice["id_token"].as_str().unwrap().to_string();
    // Expired hints are fine (only signature and issuer are checked).
    env.clock.advance(env.state.settings.id_token_ttl + 1);
    let resp = call(
        &app,
        &mut browser,
        &authorize_query("web", &format!("&prompt=none&id_token_hint={bob_hint}")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        query(&location(&resp), "error").as_deref(),
        Some("login_required")
    );
    let resp = call(
        &app,
        &mut browser,
        &authorize_query("web", &format!("&id_token_hint={bob_hint}")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200, "the login page, not a code");
    assert!(body_text(resp).await.contains("name=\"password\""));
    // The signed-in person's own hint: straight back with a code.
    let resp = call(
        &app,
        &mut browser,
        &authorize_query("web", &format!("&prompt=none&id_token_hint={alice_hint}")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert!(query(&location(&resp), "code").is_some());
    // No session at all: login_required with prompt=none, else the login page.
    let mut fresh = Browser::default();
    let resp = call(
        &app,
        &mut fresh,
        &authorize_query("web", &format!("&prompt=none&id_token_hint={alice_hint}")),
    )
    .await;
    assert_eq!(
        query(&location(&resp), "error").as_deref(),
        Some("login_required")
    );
    let resp = call(
        &app,
        &mut fresh,
        &authorize_query("web", &format!("&id_token_hint={alice_hint}")),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
}

async fn authorize_silently<S>(app: &S, cookie: &str) -> (Option<String>, Option<String>)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let resp = test::call_service(
        app,
        test::TestRequest::get()
            .uri(&authorize_query("web", "&prompt=none"))
            .insert_header(("Cookie", cookie.to_string()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    let loc = location(&resp);
    (query(&loc, "code"), query(&loc, "error"))
}

/// Codes issued from a remembered consent while the consent is withdrawn, or
/// the person signs out: the check ran on a reader, so the issuing
/// transaction looks again. Every code either went out before the withdrawal
/// (and its grant is revoked by it) or is refused with consent_required /
/// login_required; no grant for the client is left alive.
#[actix_web::test]
async fn codes_racing_a_consent_withdrawal_or_logout_leave_no_live_grant() {
    let env = Env::new();
    env.app_client("web").await;
    let alice = env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    let mut refusals = 0;
    for round in 0..4 {
        // (Re)consent, then race silent authorizations against the cut.
        sign_in(&app, &mut browser, "web", "alice", "").await;
        let cookie = browser.header();
        let answers =
            futures_util::future::join_all((0..12).map(|_| authorize_silently(&app, &cookie)));
        let (uid, session) = (
            alice.clone(),
            browser.get("deputy_session").map(str::to_string),
        );
        let cut = async {
            for _ in 0..(round + 1) {
                actix_web::rt::task::yield_now().await;
            }
            if round % 2 == 0 {
                env.state
                    .store
                    .write(move |c| {
                        deputy::admin::revoke::withdraw_consent(
                            c,
                            &uid,
                            "web",
                            None,
                            &deputy::admin::Origin::Cli,
                            T0,
                        )
                    })
                    .await
                    .unwrap();
            } else {
                let hash = deputy::secret::sha256_b64(session.unwrap().as_bytes());
                env.state
                    .store
                    .write(move |c| deputy::store::sessions::delete_session(c, &hash))
                    .await
                    .unwrap();
            }
        };
        let (answers, ()) = futures_util::future::join(answers, cut).await;
        let mut codes = Vec::new();
        for (code, error) in answers {
            match (code, error.as_deref()) {
                (Some(code), None) => codes.push(code),
                (None, Some("consent_required" | "login_required")) => refusals += 1,
                other => panic!("round {round}: {other:?}"),
            }
        }
        if round % 2 == 0 {
            // Withdrawn: no grant survives, so no issued code redeems.
            let uid = alice.clone();
            let live: i64 = env
                .state
                .store
                .read(move |c| {
                    c.scalar(
                        "SELECT COUNT(*) FROM grants WHERE subject = ?1 AND client_id = 'web' \
                         AND revoked_at IS NULL",
                        deputy::args![&uid],
                    )
                })
                .await
                .unwrap();
            assert_eq!(live, 0, "round {round}: a grant outlived the withdrawal");
            for code in codes {
                assert_eq!(redeem(&app, "web", &code, "").await.0, 400, "round {round}");
            }
        } else {
            // Signed out: the next silent request needs a login.
            let (code, error) = authorize_silently(&app, &cookie).await;
            assert_eq!((code, error.as_deref()), (None, Some("login_required")));
        }
    }
    // Refusals at issuance are in the audit trail (requests that already saw
    // the cut on their reader are refused earlier, without an event).
    let stored = env
        .count("SELECT count(*) FROM audit_events WHERE event = 'code_refused' AND outcome = 'refused'")
        .await;
    assert!(stored <= refusals, "{stored} of {refusals}");
}

/// A client removed while its consent page is open: allowing it records no
/// consent (a client registered again under the id would inherit it) and
/// issues no code — 403 like any stale form.
#[actix_web::test]
async fn consent_for_a_client_removed_meanwhile_is_not_remembered() {
    let env = Env::new();
    env.app_client("web").await;
    let alice = env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    let html = login_to_consent(&app, &mut browser, "web").await;
    env.state
        .store
        .write(|c| deputy::store::clients::remove(c, "web"))
        .await
        .unwrap();
    let resp = post_consent(&app, &browser, &html, "allow").await;
    assert_eq!(resp.status().as_u16(), 403);
    let consent = env
        .count_with(
            "SELECT count(*) FROM consent_scopes WHERE user_id = ?1 AND client_id = 'web'",
            vec![alice],
        )
        .await;
    assert_eq!(consent, 0);
}

/// Each reason a code is refused where it would be recorded, with its answer
/// and its audit event: no session row (login_required), no consent covering
/// the request (consent_required), a disabled person (access_denied), a
/// removed client (invalid_client: the caller shows a page, never redirects).
#[actix_web::test]
async fn issuance_refusals_name_their_reason_and_are_audited() {
    use deputy::grant::authorization_code::{issue_code, request::AuthorizationRequest, SignedIn};
    let env = Env::new();
    env.app_client("web").await;
    let alice = env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    sign_in(&app, &mut browser, "web", "alice", "").await;
    let session = deputy::secret::sha256_b64(browser.get("deputy_session").unwrap().as_bytes());
    let areq: AuthorizationRequest = serde_json::from_value(serde_json::json!({
        "client_id": "web", "redirect_uri": REDIRECT, "redirect_uri_sent": true,
        "scope": ["openid", "profile", "email", "notes:read"], "state": null, "nonce": null,
        "code_challenge": CHALLENGE, "resource": ISSUER,
        "prompt": {"none": false, "login": false, "consent": false},
        "max_age": null, "login_hint": null,
    }))
    .unwrap();
    let issue = |session_hash: String, areq: AuthorizationRequest| {
        let (state, user) = (env.state.clone(), alice.clone());
        async move {
            let who = SignedIn {
                session_hash: &session_hash,
                user_id: &user,
                auth_time: T0,
                amr: "pwd",
            };
            issue_code(&state.grant_context(), &areq, who)
                .await
                .map_err(|e| e.code.as_str())
        }
    };
    assert!(
        issue(session.clone(), areq.clone()).await.is_ok(),
        "control"
    );
    assert_eq!(
        issue("no-such-session".into(), areq.clone()).await,
        Err("login_required")
    );
    let mut wider = areq.clone();
    wider.scope.push("notes:write".into());
    assert_eq!(issue(session.clone(), wider).await, Err("consent_required"));
    let uid = alice.clone();
    env.state
        .store
        .write(move |c| {
            c.execute(
                "UPDATE users SET disabled_at = 1 WHERE id = ?1",
                deputy::args![&uid],
            )
        })
        .await
        .unwrap();
    assert_eq!(
        issue(session.clone(), areq.clone()).await,
        Err("access_denied")
    );
    env.state
        .store
        .write(|c| deputy::store::clients::remove(c, "web"))
        .await
        .unwrap();
    assert_eq!(issue(session, areq).await, Err("invalid_client"));
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE event = 'code_refused' AND outcome = 'refused'")
            .await,
        4
    );
}

/// RFC 8707 §2: remembered consent is per (resource, scope). Allowing
/// notes:read at API 1 and notes:write at API 2 does not cover notes:write at
/// API 1, which the person never saw: `prompt=none` answers consent_required
/// (OIDC Core §3.1.2.6) instead of issuing a code silently.
#[actix_web::test]
async fn consent_is_remembered_per_resource_and_scope() {
    let env = Env::new();
    let mut c = client("web", ClientKind::App, AuthMethod::None);
    c.grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
    c.redirect_uris = vec![REDIRECT.to_string()];
    c.scopes = vec!["notes:read".into(), "notes:write".into()];
    c.audiences = vec!["https://one.example".into(), "https://two.example".into()];
    env.add_client(c).await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    let one = "&resource=https%3A%2F%2Fone.example";
    let two = "&resource=https%3A%2F%2Ftwo.example";
    sign_in(
        &app,
        &mut browser,
        "web",
        "alice",
        &format!("&scope=openid+notes%3Aread{one}"),
    )
    .await;
    sign_in(
        &app,
        &mut browser,
        "web",
        "alice",
        &format!("&scope=openid+notes%3Awrite{two}"),
    )
    .await;
    let silently = |extra: String| {
        let uri = authorize_query("web", &format!("{extra}&prompt=none"));
        let cookie = browser.header();
        let app = &app;
        async move {
            let resp = test::call_service(
                app,
                test::TestRequest::get()
                    .uri(&uri)
                    .insert_header(("Cookie", cookie))
                    .to_request(),
            )
            .await;
            assert_eq!(resp.status().as_u16(), 303);
            let loc = location(&resp);
            (query(&loc, "code").is_some(), query(&loc, "error"))
        }
    };
    // What was allowed, where it was allowed: covered.
    assert_eq!(
        silently(format!("&scope=openid+notes%3Aread{one}")).await,
        (true, None)
    );
    assert_eq!(
        silently(format!("&scope=openid+notes%3Awrite{two}")).await,
        (true, None)
    );
    // notes:write at API 1 and notes:read at API 2 were never shown.
    for extra in [
        format!("&scope=openid+notes%3Awrite{one}"),
        format!("&scope=openid+notes%3Aread{two}"),
        format!("&scope=openid+notes%3Aread+notes%3Awrite{one}"),
    ] {
        assert_eq!(
            silently(extra.clone()).await,
            (false, Some("consent_required".to_string())),
            "{extra}"
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM consent_scopes WHERE resource = 'https://one.example'")
            .await,
        2,
        "openid and notes:read at API 1"
    );
}
