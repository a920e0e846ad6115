//! Clients that register themselves: dynamic registration (RFC 7591) under
//! the `registration` setting, metadata-document clients as stored (the
//! fetch itself is covered black-box in conformance/), blocking and expiry.

use actix_web::http::Method;
use actix_web::test;
use serde_json::{json, Value};

use crate::people::*;
use crate::support::*;

const DOC: &str = "https://agent.example/client.json";

fn env_with(f: impl FnOnce(&mut deputy::config::Settings)) -> Env {
    let dir = temp_dir();
    let mut s = settings_in(&dir);
    f(&mut s);
    Env::with_settings(dir, s, T0)
}

async fn post_register<S>(app: &S, body: Value, token: Option<&str>) -> (u16, Value, Option<String>)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let mut req = test::TestRequest::post()
        .uri("/register")
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body.to_string());
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let resp = test::call_service(app, req.to_request()).await;
    let cors = resp
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_string());
    let status = resp.status().as_u16();
    let body = test::read_body(resp).await;
    (
        status,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        cors,
    )
}

async fn discovery<S>(app: &S) -> Value
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    json_of(
        test::call_service(
            app,
            test::TestRequest::get()
                .uri("/.well-known/oauth-authorization-server")
                .to_request(),
        )
        .await,
    )
    .await
    .1
}

#[actix_web::test]
async fn registration_is_off_by_default_and_not_advertised() {
    let env = Env::new();
    let app = env.app().await;
    let meta = discovery(&app).await;
    assert!(meta.get("registration_endpoint").is_none(), "{meta}");
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    assert!(meta["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("none")));
    let (s, b, _) = post_register(&app, json!({"redirect_uris": [REDIRECT]}), None).await;
    assert_eq!((s, b["error"].as_str()), (404, Some("not_found")));
    assert_eq!(env.count("SELECT count(*) FROM clients").await, 0);
    // No such endpoint whatever the method (not a 405 that says it exists).
    for method in [Method::GET, Method::OPTIONS, Method::PUT] {
        let resp = test::call_service(
            &app,
            test::TestRequest::default()
                .method(method.clone())
                .uri("/register")
                .to_request(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 404, "{method}");
    }
}

/// With registration on, other methods are 405 with `Allow: POST` (RFC 9110
/// §15.5.6); the discovery documents answer a CORS preflight (a browser
/// client may send headers of its own, e.g. MCP-Protocol-Version).
#[actix_web::test]
async fn open_registration_answers_other_methods_and_preflights() {
    let env = env_with(|s| s.registration = deputy::config::RegistrationMode::Open);
    let app = env.app().await;
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/register").to_request()).await;
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers().get("allow").unwrap(), "POST");
    for doc in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let resp = test::call_service(
            &app,
            test::TestRequest::default()
                .method(Method::OPTIONS)
                .uri(doc)
                .insert_header(("Origin", "https://inspector.example"))
                .insert_header(("Access-Control-Request-Method", "GET"))
                .insert_header(("Access-Control-Request-Headers", "mcp-protocol-version"))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 204, "{doc}");
        let h = resp.headers();
        assert_eq!(h.get("access-control-allow-origin").unwrap(), "*", "{doc}");
        assert_eq!(h.get("access-control-allow-methods").unwrap(), "GET, HEAD");
        assert_eq!(h.get("access-control-allow-headers").unwrap(), "*");
    }
}

#[actix_web::test]
async fn open_registration_makes_a_public_client_that_signs_a_person_in() {
    let env = env_with(|s| s.registration = deputy::config::RegistrationMode::Open);
    env.person("alice").await;
    let app = env.app().await;
    assert_eq!(
        discovery(&app).await["registration_endpoint"],
        format!("{ISSUER}/register")
    );
    let (s, b, cors) = post_register(
        &app,
        json!({"redirect_uris": [REDIRECT], "client_name": "Notes Agent",
               "token_endpoint_auth_method": "none",
               "grant_types": ["authorization_code", "refresh_token",
                               "urn:ietf:params:oauth:grant-type:device_code"],
               "unknown_member": 1}),
        None,
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(cors.as_deref(), Some("*"));
    let id = b["client_id"].as_str().unwrap().to_string();
    assert_eq!(b["client_id_issued_at"], T0);
    assert_eq!(b["token_endpoint_auth_method"], "none");
    assert_eq!(
        b["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(b["id_token_signed_response_alg"], "RS256");
    assert!(b.get("client_secret").is_none());
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE event = 'client_registered'")
            .await,
        1
    );
    // The person sees on the consent page that nobody vouched for it.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query(&id, "&scope=openid"))
            .to_request(),
    )
    .await;
    let mut browser = Browser::default();
    browser.absorb(&resp);
    let html = body_text(resp).await;
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
    browser.absorb(&resp);
    let consent = body_text(resp).await;
    assert!(
        consent.contains("did not register this application"),
        "{consent}"
    );
    assert!(
        consent.contains("<strong id=\"redirect-host\">app.example</strong>"),
        "{consent}"
    );
    let resp = post_consent(&app, &browser, &consent, "allow").await;
    let code = query(&location(&resp), "code").unwrap();
    let (s, tokens) = redeem(&app, &id, &code, "").await;
    assert_eq!(s, 200, "{tokens}");
    assert!(tokens["refresh_token"].is_string());
    // Remembered for this client (an https redirect): no page the next time.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query(&id, "&scope=openid"))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert!(query(&location(&resp), "code").is_some());
    // OIDC Registration §2: RS256 unless the client asked for another.
    let (header, claims) = peek(tokens["id_token"].as_str().unwrap());
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["aud"], id.as_str());
    assert_eq!(
        peek(tokens["access_token"].as_str().unwrap()).0["alg"],
        "ES256"
    );
}

#[actix_web::test]
async fn open_registration_refuses_what_it_must_not_grant() {
    let env = env_with(|s| {
        s.registration = deputy::config::RegistrationMode::Open;
        s.rate_limit_registration = 0;
    });
    let app = env.app().await;
    for (body, error) in [
        (
            json!({"redirect_uris": ["javascript:alert(1)"], "token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["http://app.example/cb"], "token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        // RFC 7591 §2: no method means client_secret_basic: not for anyone.
        (
            json!({"redirect_uris": [REDIRECT]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post"}),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ] {
        let (s, b, cors) = post_register(&app, body.clone(), None).await;
        assert_eq!((s, b["error"].as_str()), (400, Some(error)), "{body}");
        assert_eq!(
            cors.as_deref(),
            Some("*"),
            "errors are readable cross-origin too"
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM clients").await, 0);
}

#[actix_web::test]
async fn token_registration_needs_a_live_initial_access_token() {
    let env = env_with(|s| {
        s.registration = deputy::config::RegistrationMode::Token;
        s.rate_limit_registration = 0;
    });
    let out = env
        .cli()
        .args(["registration", "token", "create", "--max-uses", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = created["initial_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let app = env.app().await;
    let body =
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic"});
    let (s, b, _) = post_register(&app, body.clone(), None).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_token")));
    let (s, b, _) = post_register(&app, body.clone(), Some("wrong")).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_token")));
    // A confidential client is allowed with a token, and gets its secret once.
    let (s, b, _) = post_register(&app, body.clone(), Some(&token)).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["client_secret_expires_at"], 0);
    assert_eq!(b["client_secret"].as_str().unwrap().len(), 43);
    // Used up.
    let (s, b, _) = post_register(&app, body.clone(), Some(&token)).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_token")));
    // Expired (made on the test clock; the CLI uses the real one).
    let (t2, record) =
        deputy::client_registry::registration::new_initial_access_token(T0, Some(60), None);
    env.state
        .store
        .write(move |c| deputy::store::registration_tokens::insert(c, &record))
        .await
        .unwrap();
    let (s, _, _) = post_register(&app, body.clone(), Some(&t2)).await;
    assert_eq!(s, 201, "live before it expires");
    env.clock.advance(61);
    let (s, b, _) = post_register(&app, body, Some(&t2)).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_token")));
    assert_eq!(
        env.count("SELECT count(*) FROM clients WHERE registration = 'dynamic'")
            .await,
        2
    );
}

#[actix_web::test]
async fn registration_is_rate_limited_per_address() {
    let env = env_with(|s| s.registration = deputy::config::RegistrationMode::Open);
    let app = env.app().await;
    let body = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"});
    let (s, _, _) = post_register(&app, body.clone(), None).await;
    assert_eq!(s, 201);
    let (s, b, _) = post_register(&app, body.clone(), None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (429, Some("temporarily_unavailable"))
    );
    env.clock.advance(1);
    let (s, _, _) = post_register(&app, body, None).await;
    assert_eq!(s, 201);
}

/// Open registration, unused clients unknown after 1000 s, no rate limit.
fn short_lived_registrations() -> Env {
    env_with(|s| {
        s.registration = deputy::config::RegistrationMode::Open;
        s.registration_unused_ttl = 1000;
        s.rate_limit_registration = 0;
    })
}

/// What an MCP client registers: public, for the code flow.
fn public_client() -> Value {
    json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
}

#[actix_web::test]
async fn an_unused_registered_client_expires_and_is_swept() {
    let env = short_lived_registrations();
    let app = env.app().await;
    let body = public_client();
    let (_, b, _) = post_register(&app, body.clone(), None).await;
    let old = b["client_id"].as_str().unwrap().to_string();
    env.clock.advance(1001);
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query(&old, "&scope=openid"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400, "an expired client is unknown");
    assert!(resp.headers().get("location").is_none());
    let (s, _, _) = post_register(&app, body, None).await;
    assert_eq!(s, 201);
    assert_eq!(
        env.count_with(
            "SELECT count(*) FROM clients WHERE id = ?1",
            vec![old.clone()]
        )
        .await,
        0,
        "the next registration removed it"
    );
    // Nobody asked for the removal: deputy's own act in the audit trail.
    assert_eq!(
        env.count_with(
            "SELECT count(*) FROM audit_events WHERE event = 'client_removed' AND mode = 'system' \
             AND client_id = ?1",
            vec![old]
        )
        .await,
        1
    );
}

/// With an unused-client lifetime shorter than an hour, a use still counts:
/// the client used half-way is alive past its first lifetime (the audit of
/// round 2 found the use recorded only once an hour).
#[actix_web::test]
async fn a_registered_client_in_use_outlives_a_short_unused_lifetime() {
    let env = short_lived_registrations();
    let app = env.app().await;
    let (_, b, _) = post_register(&app, public_client(), None).await;
    let id = b["client_id"].as_str().unwrap().to_string();
    let visit = || {
        test::TestRequest::get()
            .uri(&authorize_query(&id, "&scope=openid"))
            .to_request()
    };
    env.clock.advance(500);
    let resp = test::call_service(&app, visit()).await;
    assert_eq!(resp.status().as_u16(), 200, "the login page");
    assert_eq!(
        env.count_with(
            "SELECT count(*) FROM clients WHERE id = ?1 AND CAST(last_used_at AS TEXT) = ?2",
            vec![id.clone(), (T0 + 500).to_string()]
        )
        .await,
        1,
        "the use was recorded"
    );
    // 1,200 s after registration, 700 s after the use: still known.
    env.clock.advance(700);
    let resp = test::call_service(&app, visit()).await;
    assert_eq!(
        resp.status().as_u16(),
        200,
        "a client in use is not expired"
    );
    // Unused for longer than the lifetime: unknown.
    env.clock.advance(1001);
    let resp = test::call_service(&app, visit()).await;
    assert_eq!(resp.status().as_u16(), 400, "an unused client is unknown");
}

/// A metadata-document client as deputy caches it (the fetch is tested
/// black-box): the consent page names its URL and redirect host, it may ask
/// for resources the operator registered, and blocking it ends it.
#[actix_web::test]
async fn a_metadata_document_client_is_self_described_and_can_be_blocked() {
    let env = Env::new();
    env.person("alice").await;
    let mut c = client(
        DOC,
        deputy::model::ClientKind::Agent,
        deputy::model::AuthMethod::None,
    );
    c.grant_types = vec![
        deputy::model::GrantType::AuthorizationCode,
        deputy::model::GrantType::RefreshToken,
    ];
    c.redirect_uris = vec!["http://127.0.0.1/callback".into()];
    c.scopes = vec![];
    c.audiences = vec![];
    c.origin.registration = deputy::model::Registration::MetadataDocument;
    c.origin.metadata_expires_at = Some(T0 + 3600);
    env.add_client(c).await;
    let out = env
        .cli()
        .args([
            "resource",
            "add",
            "--id",
            "https://mcp.example/mcp",
            "--scope",
            "tools=Use the tools",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = env.app().await;
    let doc = enc(DOC);
    let start = |extra: &str| {
        format!(
            "/authorize?client_id={doc}&response_type=code&redirect_uri={}&state=st-1\
             &code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
            enc("http://127.0.0.1:49152/callback")
        )
    };
    // Not a registered resource: refused back to the client.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&start("&scope=openid&resource=https%3A%2F%2Fother.example"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        query(&location(&resp), "error").as_deref(),
        Some("invalid_target")
    );
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&start(
                "&scope=tools&resource=https%3A%2F%2Fmcp.example%2Fmcp",
            ))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut browser = Browser::default();
    browser.absorb(&resp);
    let html = body_text(resp).await;
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
    browser.absorb(&resp);
    let consent = body_text(resp).await;
    assert!(
        consent.contains(&format!("described itself at <code>{DOC}</code>")),
        "{consent}"
    );
    assert!(
        consent.contains("<strong id=\"redirect-host\">127.0.0.1:49152</strong>"),
        "{consent}"
    );
    assert!(consent.contains("Use the tools"), "{consent}");
    let resp = post_consent(&app, &browser, &consent, "allow").await;
    let code = query(&location(&resp), "code").unwrap();
    let body = format!(
        "grant_type=authorization_code&code={code}&client_id={doc}&code_verifier={VERIFIER}\
         &redirect_uri={}",
        enc("http://127.0.0.1:49152/callback")
    );
    let (s, tokens) =
        json_of(test::call_service(&app, form_post("/token", &body).to_request()).await).await;
    assert_eq!(s, 200, "{tokens}");
    let (_, claims) = peek(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://mcp.example/mcp");
    assert_eq!(claims["client_id"], DOC);

    // RFC 8252 §8.6: any local program can listen on a loopback redirect, so
    // a self-described client with one is never answered silently: the
    // consent page again, and prompt=none gets consent_required.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&start(
                "&scope=tools&resource=https%3A%2F%2Fmcp.example%2Fmcp",
            ))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(body_text(resp)
        .await
        .contains("did not register this application"));
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&start(
                "&scope=tools&resource=https%3A%2F%2Fmcp.example%2Fmcp&prompt=none",
            ))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    let loc = location(&resp);
    assert_eq!(query(&loc, "error").as_deref(), Some("consent_required"));
    assert!(query(&loc, "code").is_none());

    // The operator blocks it: its tokens die, and it is unknown everywhere.
    let out = env.cli().args(["client", "block", DOC]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blocked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        blocked["tokens_revoked"].as_u64().unwrap() >= 2,
        "{blocked}"
    );
    let refresh = format!(
        "grant_type=refresh_token&client_id={doc}&refresh_token={}",
        enc(tokens["refresh_token"].as_str().unwrap())
    );
    let (s, b) =
        json_of(test::call_service(&app, form_post("/token", &refresh).to_request()).await).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")));
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&start(
                "&scope=tools&resource=https%3A%2F%2Fmcp.example%2Fmcp",
            ))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.headers().get("location").is_none());
    let out = env.cli().args(["client", "list"]).output().unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["registration"], "metadata_document");
    assert!(list[0]["blocked_at"].is_i64());
}

#[actix_web::test]
async fn a_url_never_seen_can_be_blocked_before_its_first_use() {
    let env = Env::new();
    let out = env.cli().args(["client", "block", DOC]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = env.app().await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&format!(
                "/authorize?client_id={}&response_type=code&scope=openid&code_challenge={CHALLENGE}\
                 &code_challenge_method=S256",
                enc(DOC)
            ))
            .to_request(),
    )
    .await;
    // Refused without any fetch (agent.example does not exist).
    assert_eq!(resp.status().as_u16(), 400);
    let html = body_text(resp).await;
    assert!(html.contains("not known"), "{html}");
    let out = env.cli().args(["client", "block", DOC]).output().unwrap();
    assert!(!out.status.success());
}

/// An initial access token with one use left registers exactly one client,
/// however many registrations race for it (one atomic statement spends it).
#[actix_web::test]
async fn twenty_registrations_racing_for_one_use_register_one_client() {
    let env = env_with(|s| {
        s.registration = deputy::config::RegistrationMode::Token;
        s.rate_limit_registration = 0;
    });
    let (token, record) =
        deputy::client_registry::registration::new_initial_access_token(T0, None, Some(1));
    env.state
        .store
        .write(move |c| deputy::store::registration_tokens::insert(c, &record))
        .await
        .unwrap();
    let app = env.app().await;
    let body = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"});
    let answers = futures_util::future::join_all(
        (0..20).map(|_| post_register(&app, body.clone(), Some(&token))),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM clients WHERE registration = 'dynamic'")
            .await,
        1
    );
}

/// Anyone can make deputy cache a metadata document by naming its URL; rows
/// nobody uses are forgotten, never one that is blocked or that a grant or
/// consent hangs from.
#[actix_web::test]
async fn unused_cached_documents_are_forgotten_but_not_blocked_or_consented_ones() {
    let env = Env::new();
    let user = env.person("alice").await;
    for (id, blocked) in [
        ("https://a.example/unused.json", None),
        ("https://a.example/blocked.json", Some(T0)),
        ("https://a.example/consented.json", None),
        ("https://a.example/fresh.json", None),
    ] {
        let mut c = client(
            id,
            deputy::model::ClientKind::Agent,
            deputy::model::AuthMethod::None,
        );
        c.origin.registration = deputy::model::Registration::MetadataDocument;
        c.origin.metadata_expires_at = Some(if id.ends_with("fresh.json") {
            T0 + 10
        } else {
            T0 - 100
        });
        c.origin.blocked_at = blocked;
        env.add_client(c).await;
    }
    env.state
        .store
        .write(move |c| {
            c.execute(
                "INSERT INTO consent_scopes VALUES (?1, 'https://a.example/consented.json', ?2, 'openid', ?3)",
                &[user.clone().into(), ISSUER.into(), T0.into()],
            )
        })
        .await
        .unwrap();
    let forgotten = env
        .state
        .store
        .write(|c| deputy::store::clients::forget_unused_documents(c, T0, 10))
        .await
        .unwrap();
    assert_eq!(forgotten, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM clients WHERE id = 'https://a.example/unused.json'")
            .await,
        0
    );
    assert_eq!(env.count("SELECT count(*) FROM clients").await, 3);
}
