//! People: authorization code + PKCE, login and consent pages, ID tokens,
//! userinfo and logout (RFC 6749 §4.1, RFC 7636, OIDC Core).

use actix_web::test;
use serde_json::Value;

use crate::people::*;
use crate::support::*;

#[actix_web::test]
async fn full_sign_in_yields_rfc9068_access_token_and_oidc_id_token() {
    let env = Env::new();
    env.app_client("web").await;
    let sub = env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    let code = sign_in(&app, &mut browser, "web", "alice", "").await;
    let (status, body) = redeem(&app, "web", &code, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["refresh_token"].as_str().unwrap().len() >= 43);
    let (h, at) = peek(body["access_token"].as_str().unwrap());
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(at["sub"], sub);
    assert_eq!(at["client_id"], "web");
    assert_eq!(
        at["aud"], ISSUER,
        "documented default audience: deputy itself"
    );
    assert_eq!(at["auth_time"], T0);
    assert_eq!(at["scope"], "openid profile email notes:read");
    let (ih, id) = peek(body["id_token"].as_str().unwrap());
    assert_eq!(ih["alg"], "ES256");
    assert_eq!(id["iss"], ISSUER);
    assert_eq!(id["sub"], sub);
    assert_eq!(id["aud"], "web");
    assert_eq!(id["azp"], "web");
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["auth_time"], T0);
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    assert_eq!(
        id["at_hash"],
        deputy::token::id_token::at_hash(body["access_token"].as_str().unwrap())
    );
    assert_eq!(id["exp"], T0 + 300);
    // Cookies: HttpOnly, SameSite=Lax, not Secure on an http issuer.
    assert!(browser.get("deputy_session").is_some());
}

#[actix_web::test]
async fn session_cookie_flags_and_html_security_headers() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", ""))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    assert!(h
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer");
    assert_eq!(h.get("cache-control").unwrap(), "no-store");
    let mut browser = Browser::default();
    browser.absorb(&resp);
    let html = body_text(resp).await;
    let login = test::call_service(
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
    let set: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("deputy_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "http issuer: no Secure flag");
}

#[actix_web::test]
async fn consent_is_remembered_and_prompt_none_works_with_a_session() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    sign_in(&app, &mut browser, "web", "alice", "").await;
    // Second time: no pages at all, straight back with a code.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", "&prompt=none"))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert!(query(&location(&resp), "code").is_some());
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE event = 'consent_given'")
            .await,
        1
    );
}

#[actix_web::test]
async fn prompt_none_without_session_is_login_required() {
    let env = Env::new();
    env.app_client("web").await;
    let app = env.app().await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", "&prompt=none"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    let loc = location(&resp);
    assert!(loc.as_str().starts_with(REDIRECT));
    assert_eq!(query(&loc, "error").as_deref(), Some("login_required"));
    assert_eq!(query(&loc, "state").as_deref(), Some("st-1"));
    assert_eq!(query(&loc, "iss").as_deref(), Some(ISSUER));
}

#[actix_web::test]
async fn untrusted_client_or_redirect_gets_a_page_never_a_redirect() {
    let env = Env::new();
    env.app_client("web").await;
    let app = env.app().await;
    for uri in [
        authorize_query("nobody", ""),
        authorize_query("web", "&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%2F"),
        authorize_query("web", "&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"),
    ] {
        let resp = test::call_service(&app, test::TestRequest::get().uri(&uri).to_request()).await;
        assert_eq!(resp.status().as_u16(), 400, "{uri}");
        assert!(resp.headers().get("location").is_none());
        assert!(resp
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
}

#[actix_web::test]
async fn pkce_is_required_and_s256_only() {
    let env = Env::new();
    env.app_client("web").await;
    let app = env.app().await;
    let base = "/authorize?client_id=web&response_type=code&scope=openid&state=s";
    for extra in [
        "".to_string(),
        format!("&code_challenge={CHALLENGE}"),
        format!("&code_challenge={CHALLENGE}&code_challenge_method=plain"),
        "&code_challenge=short&code_challenge_method=S256".to_string(),
    ] {
        let resp = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&format!("{base}{extra}"))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 303, "{extra}");
        assert_eq!(
            query(&location(&resp), "error").as_deref(),
            Some("invalid_request"),
            "{extra}"
        );
    }
}

/// POST a code redemption with a raw body; (status, JSON).
async fn redeem_raw<S>(app: &S, body: &str) -> (u16, Value)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    json_of(test::call_service(app, form_post("/token", body).to_request()).await).await
}

#[actix_web::test]
async fn code_redemption_rules() {
    let env = Env::new();
    env.app_client("web").await;
    env.app_client("other").await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();

    // Another client (RFC 6749 §4.1.3): refused, and the code is not spent,
    // since that client is not its owner.
    let code = sign_in(&app, &mut browser, "web", "alice", "").await;
    assert_eq!(
        redeem(&app, "other", &code, "").await.1["error"],
        "invalid_grant"
    );
    let (s, first) = redeem(&app, "web", &code, "").await;
    assert_eq!(s, 200, "{first}");
    // Reuse: invalid_grant and everything from the first redemption is revoked (RFC 6749 §4.1.2).
    let (s, b) = redeem(&app, "web", &code, "").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    let jti = peek(first["access_token"].as_str().unwrap()).1["jti"]
        .as_str()
        .unwrap()
        .to_string();
    let rec = env.token_record(&jti).await;
    assert!(
        rec.revoked_at.is_some(),
        "tokens from a replayed code are revoked"
    );
    let refresh = first["refresh_token"].as_str().unwrap();
    let (s, b) = redeem_raw(
        &app,
        &format!("grant_type=refresh_token&client_id=web&refresh_token={refresh}"),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
}

/// A code is presented once (RFC 6749 §4.1.2): its own client's presentation
/// that fails the PKCE (RFC 7636 §4.6) or redirect_uri (RFC 6749 §4.1.3)
/// check spends it, the refusal is recorded as `code_refused`, and a second
/// attempt with the right values fails.
#[actix_web::test]
async fn a_failed_presentation_by_its_own_client_spends_the_code() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    let wrong_verifier = format!("&code_verifier={}", "x".repeat(43));
    let cases = [
        ("wrong verifier", wrong_verifier.as_str(), "invalid_grant"),
        ("no verifier", "&code_verifier=", "invalid_grant"),
        (
            "other redirect_uri",
            "&redirect_uri=https%3A%2F%2Fapp.example%2Fother",
            "invalid_grant",
        ),
    ];
    for (n, (what, bad, error)) in cases.iter().enumerate() {
        let code = sign_in(&app, &mut browser, "web", "alice", "").await;
        let body = if bad.starts_with("&code_verifier") {
            format!("grant_type=authorization_code&code={code}&client_id=web{bad}")
        } else {
            format!(
                "grant_type=authorization_code&code={code}&client_id=web&code_verifier={VERIFIER}{bad}"
            )
        };
        let (s, b) = redeem_raw(&app, &body).await;
        assert_eq!((s, b["error"].as_str()), (400, Some(*error)), "{what}");
        let (s, b) = redeem(&app, "web", &code, "").await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("invalid_grant")),
            "{what}: the right values after a failed presentation"
        );
        assert_eq!(
            env.count("SELECT count(*) FROM audit_events WHERE event = 'code_refused' AND outcome = 'refused' AND client_id = 'web'")
                .await,
            n as i64 + 1,
            "{what}"
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM tokens").await,
        0,
        "nothing was issued from a spent code"
    );
}

#[actix_web::test]
async fn redirect_uri_sent_at_authorization_must_be_repeated() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    let with_redirect = "&redirect_uri=https%3A%2F%2Fapp.example%2Fcb";
    let code = sign_in(&app, &mut browser, "web", "alice", with_redirect).await;
    let (s, b) = redeem(&app, "web", &code, "").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")));
    // The failed presentation spent it (RFC 6749 §4.1.2).
    assert_eq!(
        redeem(&app, "web", &code, with_redirect).await.1["error"],
        "invalid_grant"
    );
    let code = sign_in(&app, &mut browser, "web", "alice", with_redirect).await;
    assert_eq!(redeem(&app, "web", &code, with_redirect).await.0, 200);
}

#[actix_web::test]
async fn codes_expire() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let code = sign_in(&app, &mut Browser::default(), "web", "alice", "").await;
    env.clock.advance(env.state.settings.code_ttl);
    assert_eq!(
        redeem(&app, "web", &code, "").await.1["error"],
        "invalid_grant"
    );
}

#[actix_web::test]
async fn twenty_parallel_redemptions_give_at_most_one_live_token_set() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let code = sign_in(&app, &mut Browser::default(), "web", "alice", "").await;
    let futures: Vec<_> = (0..20).map(|_| redeem(&app, "web", &code, "")).collect();
    let results = futures_util::future::join_all(futures).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert!(
        results.iter().all(|(s, _)| *s == 200 || *s == 400),
        "{results:?}"
    );
    assert!(ok <= 1);
    let live = env
        .count("SELECT count(*) FROM tokens WHERE kind = 'access' AND revoked_at IS NULL")
        .await;
    assert_eq!(
        live, 0,
        "a raced code is a replayed code: nothing issued from it stays live"
    );
}

#[actix_web::test]
async fn csrf_and_browser_binding_are_enforced() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", ""))
            .to_request(),
    )
    .await;
    let mut browser = Browser::default();
    browser.absorb(&resp);
    let html = body_text(resp).await;
    let i = hidden(&html, "interaction");
    let csrf = hidden(&html, "csrf");
    let attempts = [
        (
            format!(
                "interaction={i}&csrf=wrong&username=alice&password={}",
                enc(PASSWORD)
            ),
            browser.header(),
        ),
        (
            format!("interaction={i}&username=alice&password={}", enc(PASSWORD)),
            browser.header(),
        ),
        (
            format!(
                "interaction={i}&csrf={csrf}&username=alice&password={}",
                enc(PASSWORD)
            ),
            "deputy_browser=another-browser-value-xyz".to_string(),
        ),
    ];
    for (body, cookie) in attempts {
        let resp = test::call_service(
            &app,
            form_post("/login", &body)
                .insert_header(("Cookie", cookie))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 403, "{body}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM sessions").await,
        0,
        "nothing created"
    );
}

#[actix_web::test]
async fn failed_logins_share_one_message_and_are_throttled() {
    let env = Env::new();
    env.app_client("web").await;
    let alice = env.person("alice").await;
    let app = env.app().await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", ""))
            .to_request(),
    )
    .await;
    let mut browser = Browser::default();
    browser.absorb(&resp);
    let html = body_text(resp).await;
    let (i, csrf) = (hidden(&html, "interaction"), hidden(&html, "csrf"));
    let attempt = |user: &str, pw: &str| {
        form_post(
            "/login",
            &format!("interaction={i}&csrf={csrf}&username={user}&password={pw}"),
        )
        .insert_header(("Cookie", browser.header()))
        .to_request()
    };
    let wrong = test::call_service(&app, attempt("alice", "nope-nope")).await;
    assert_eq!(wrong.status().as_u16(), 401);
    let wrong_html = body_text(wrong).await;
    let unknown = test::call_service(&app, attempt("mallory", "nope-nope")).await;
    assert_eq!(unknown.status().as_u16(), 401);
    let unknown_html = body_text(unknown).await;
    let msg = "The username or password is incorrect.";
    assert!(wrong_html.contains(msg) && unknown_html.contains(msg));
    let mut last = 0;
    for _ in 0..5 {
        last = test::call_service(&app, attempt("alice", "nope-nope"))
            .await
            .status()
            .as_u16();
    }
    assert_eq!(last, 429);
    let resp = test::call_service(&app, attempt("alice", &enc(PASSWORD))).await;
    assert_eq!(
        resp.status().as_u16(),
        429,
        "even the right password waits while throttled"
    );
    assert!(resp.headers().get("retry-after").is_some());
    // The two throttled attempts are not rows of their own (they are
    // audited as one burst, see throttling.rs).
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE event = 'login_failed'")
            .await,
        6
    );
    // Alice's failures are in her trail; the unknown name is recorded as no one.
    let persons: Vec<Option<String>> = env
        .state
        .store
        .read(|c| {
            c.query(
                "SELECT person FROM audit_events WHERE event = 'login_failed' ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect()
        })
        .await
        .unwrap();
    let mut expected = vec![Some(alice.clone()); 6];
    expected[1] = None;
    assert_eq!(persons, expected);
    // A form that is not readable (invalid UTF-8) is 400, not a CSRF refusal.
    let resp = test::call_service(
        &app,
        form_post("/login", "interaction=x&csrf=y&username=%FF")
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400);
}

#[actix_web::test]
async fn denied_consent_returns_access_denied() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    let html = login_to_consent(&app, &mut browser, "web").await;
    let resp = post_consent(&app, &browser, &html, "deny").await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        query(&location(&resp), "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(
        env.count("SELECT count(*) FROM authorization_codes").await,
        0
    );
}

#[actix_web::test]
async fn agent_consent_page_says_it_acts_for_the_person() {
    let env = Env::new();
    let mut c = client(
        "helper-bot",
        deputy::model::ClientKind::Agent,
        deputy::model::AuthMethod::None,
    );
    c.grant_types = vec![deputy::model::GrantType::AuthorizationCode];
    c.redirect_uris = vec![REDIRECT.to_string()];
    c.scopes = vec!["notes:read".into()];
    env.add_client(c).await;
    env.person("alice").await;
    let app = env.app().await;
    let html = login_to_consent(&app, &mut Browser::default(), "helper-bot").await;
    assert!(
        html.contains("is an AI agent") && html.contains("act on your behalf"),
        "{html}"
    );
}

#[actix_web::test]
async fn userinfo_by_scope_and_refusals() {
    let env = Env::new();
    env.app_client("web").await;
    let sub = env.person("alice").await;
    let app = env.app().await;
    let code = sign_in(&app, &mut Browser::default(), "web", "alice", "").await;
    let (_, tokens) = redeem(&app, "web", &code, "").await;
    let at = tokens["access_token"].as_str().unwrap().to_string();
    let get = |t: String| {
        test::TestRequest::get()
            .uri("/userinfo")
            .insert_header(("Authorization", format!("Bearer {t}")))
            .to_request()
    };
    let (s, info) = json_of(test::call_service(&app, get(at.clone())).await).await;
    assert_eq!(s, 200);
    assert_eq!(info["sub"], sub);
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["email"], "alice@example.com");
    // Garbage and an ID token are refused with RFC 6750 §3.1 invalid_token.
    for bad in [
        "garbage".to_string(),
        tokens["id_token"].as_str().unwrap().to_string(),
    ] {
        let resp = test::call_service(&app, get(bad)).await;
        assert_eq!(resp.status().as_u16(), 401);
        assert!(resp
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("invalid_token"));
    }
    // Revoked: the person is disabled and their tokens revoked.
    let sub2 = sub.clone();
    env.state
        .store
        .write(move |c| deputy::store::tokens::revoke_subject(c, &sub2, T0, "test").map(|_| ()))
        .await
        .unwrap();
    assert_eq!(
        test::call_service(&app, get(at.clone()))
            .await
            .status()
            .as_u16(),
        401
    );
    let _: Value = info;
}

#[actix_web::test]
async fn logout_with_id_token_hint_ends_the_session_and_redirects() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    let code = sign_in(&app, &mut browser, "web", "alice", "").await;
    let (_, tokens) = redeem(&app, "web", &code, "").await;
    let hint = tokens["id_token"].as_str().unwrap();
    // An unregistered post-logout URI is refused.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&format!(
                "/logout?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F"
            ))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400);
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&format!("/logout?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Fapp.example%2Fbye&state=bye1"))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        location(&resp).as_str(),
        "https://app.example/bye?state=bye1"
    );
    assert_eq!(env.count("SELECT count(*) FROM sessions").await, 0);
    // prompt=none now fails: the session is gone.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", "&prompt=none"))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(
        query(&location(&resp), "error").as_deref(),
        Some("login_required")
    );
}

#[actix_web::test]
async fn max_age_zero_and_prompt_login_force_a_fresh_login_and_fragment_mode_is_refused() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    sign_in(&app, &mut browser, "web", "alice", "").await;
    for extra in ["&max_age=0", "&prompt=login"] {
        let resp = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&authorize_query("web", extra))
                .insert_header(("Cookie", browser.header()))
                .to_request(),
        )
        .await;
        assert_eq!(
            resp.status().as_u16(),
            200,
            "{extra}: a login page, not a code"
        );
        assert!(body_text(resp).await.contains("name=\"password\""));
    }
    // A recent enough login satisfies max_age.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", "&max_age=600"))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", "&response_mode=fragment"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    let loc = location(&resp);
    assert_eq!(query(&loc, "error").as_deref(), Some("invalid_request"));
    assert!(loc.fragment().is_none());
}

#[actix_web::test]
async fn parallel_guesses_cannot_slip_past_the_throttle() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", ""))
            .to_request(),
    )
    .await;
    let mut browser = Browser::default();
    browser.absorb(&resp);
    let html = body_text(resp).await;
    let (i, csrf) = (hidden(&html, "interaction"), hidden(&html, "csrf"));
    let attempts: Vec<_> = (0..30)
        .map(|n| {
            test::call_service(
                &app,
                form_post(
                    "/login",
                    &format!("interaction={i}&csrf={csrf}&username=alice&password=guess-{n}"),
                )
                .insert_header(("Cookie", browser.header()))
                .to_request(),
            )
        })
        .collect();
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(
        checked, 5,
        "only the free attempts reach the password check: {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 25);
}

#[actix_web::test]
async fn consent_for_one_resource_is_not_consent_for_another() {
    let env = Env::new();
    let mut c = client(
        "web2",
        deputy::model::ClientKind::App,
        deputy::model::AuthMethod::None,
    );
    c.grant_types = vec![deputy::model::GrantType::AuthorizationCode];
    c.redirect_uris = vec![REDIRECT.to_string()];
    c.scopes = vec!["notes:read".into()];
    c.audiences = vec!["https://a.example".into(), "https://b.example".into()];
    env.add_client(c).await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    sign_in(
        &app,
        &mut browser,
        "web2",
        "alice",
        "&resource=https%3A%2F%2Fa.example",
    )
    .await;
    let again = |res: &str| {
        test::TestRequest::get()
            .uri(&authorize_query(
                "web2",
                &format!("&prompt=none&resource={res}"),
            ))
            .insert_header(("Cookie", browser.header()))
            .to_request()
    };
    let resp = test::call_service(&app, again("https%3A%2F%2Fa.example")).await;
    assert!(
        query(&location(&resp), "code").is_some(),
        "same resource: remembered"
    );
    let resp = test::call_service(&app, again("https%3A%2F%2Fb.example")).await;
    assert_eq!(
        query(&location(&resp), "error").as_deref(),
        Some("consent_required")
    );
}

#[actix_web::test]
async fn userinfo_without_credentials_is_a_bare_bearer_challenge_rfc6750_s3_1() {
    let env = Env::new();
    let app = env.app().await;
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/userinfo").to_request()).await;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers().get("www-authenticate").unwrap(), "Bearer");
    let body = test::read_body(resp).await;
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert!(
        body.is_empty() || json == serde_json::json!({}),
        "no error member (RFC 6750 §3.1): {body:?}"
    );
}
