//! The person's account page (`/account`): signing in through it, what it
//! lists per client, withdrawing a client or a task, signing out everywhere,
//! CSRF and same-origin refusals, another person's access, activity paging.

use actix_web::test;
use deputy::model::{AuthMethod, ClientKind, GrantType};
use deputy::policy::delegation::DelegationRule;
use deputy::secret::{hash_secret, Argon2Profile};
use serde_json::Value;

use crate::people::*;
use crate::support::*;
use crate::token_status::App;

const TE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange";
const AT: &str = "urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";
const NOTES: &str = "https://notes.example";
const TASK: &str = "ticket-42";

struct World {
    env: Env,
    secrets: std::collections::HashMap<String, String>,
}

/// What alice's agents hold after one sign-in and two exchanges.
struct Held {
    /// agent-x's access token from the code (no `act`).
    person_token: String,
    refresh_token: String,
    /// agent-x's delegation token for agent-y, task ticket-42.
    hop1: String,
    /// agent-y's token for the notes API, derived from hop1.
    hop2: String,
}

impl World {
    async fn new() -> World {
        let env = Env::new();
        let mut secrets = std::collections::HashMap::new();
        for (id, grants) in [
            (
                "agent-x",
                vec![
                    GrantType::AuthorizationCode,
                    GrantType::RefreshToken,
                    GrantType::TokenExchange,
                ],
            ),
            ("agent-y", vec![GrantType::TokenExchange]),
        ] {
            let secret = deputy::secret::new_secret();
            let mut c = client(id, ClientKind::Agent, AuthMethod::ClientSecretPost);
            c.name = format!("Agent {}", id.trim_start_matches("agent-").to_uppercase());
            c.grant_types = grants;
            c.redirect_uris = vec![REDIRECT.to_string()];
            c.scopes = vec!["notes:read".into()];
            c.audiences = vec![NOTES.to_string()];
            c.secret_hash = Some(hash_secret(&secret, Argon2Profile::GeneratedSecret).unwrap());
            env.add_client(c).await;
            secrets.insert(id.to_string(), secret);
        }
        for (actor, audience) in [("agent-x", "agent-y"), ("agent-y", NOTES)] {
            let r = DelegationRule {
                id: format!("rule-{actor}"),
                actor: actor.into(),
                audience: audience.into(),
                scopes: vec!["notes:read".into()],
                max_lifetime: 600,
                max_depth: 2,
                broker: None,
                require_dpop: false,
                created_at: T0,
            };
            env.state
                .store
                .write(move |c| deputy::store::delegation::insert(c, &r))
                .await
                .unwrap();
        }
        env.person("alice").await;
        env.person("bob").await;
        World { env, secrets }
    }

    fn auth(&self, id: &str) -> String {
        format!("client_id={id}&client_secret={}", enc(&self.secrets[id]))
    }

    async fn token(&self, app: &impl App, body: String) -> Value {
        let (s, b) = self.token_response(app, body).await;
        assert_eq!(s, 200, "{b}");
        b
    }

    async fn token_response(&self, app: &impl App, body: String) -> (u16, Value) {
        json_of(test::call_service(app, form_post("/token", &body).to_request()).await).await
    }

    /// `username` signs in to agent-x with `browser`; agent-x exchanges for
    /// agent-y (task ticket-42), agent-y for the notes API.
    async fn delegate(&self, app: &impl App, browser: &mut Browser, username: &str) -> Held {
        let code = sign_in(app, browser, "agent-x", username, "").await;
        let issued = self
            .token(
                app,
                format!(
                    "grant_type=authorization_code&code={code}&{}&code_verifier={VERIFIER}",
                    self.auth("agent-x")
                ),
            )
            .await;
        let person_token = issued["access_token"].as_str().unwrap().to_string();
        let hop1 = self
            .token(
                app,
                format!(
                    "grant_type={TE}&{}&subject_token={person_token}&subject_token_type={AT}\
                     &audience=agent-y&task={TASK}",
                    self.auth("agent-x")
                ),
            )
            .await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let hop2 = self
            .token(
                app,
                format!(
                    "grant_type={TE}&{}&subject_token={hop1}&subject_token_type={AT}&resource={}",
                    self.auth("agent-y"),
                    enc(NOTES)
                ),
            )
            .await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        Held {
            person_token,
            refresh_token: issued["refresh_token"].as_str().unwrap().to_string(),
            hop1,
            hop2,
        }
    }

    /// RFC 7662 §2.2: the answer to the token's holder.
    async fn active(&self, app: &impl App, holder: &str, token: &str) -> bool {
        let body = format!("token={token}&{}", self.auth(holder));
        let (s, b) =
            json_of(test::call_service(app, form_post("/introspect", &body).to_request()).await)
                .await;
        assert_eq!(s, 200, "{b}");
        b["active"].as_bool().unwrap()
    }
}

async fn get(app: &impl App, browser: &mut Browser, uri: &str) -> actix_web::dev::ServiceResponse {
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

/// POST an account form with the browser's cookies and extra headers.
async fn post(
    app: &impl App,
    browser: &mut Browser,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> actix_web::dev::ServiceResponse {
    let mut req = form_post(path, body).insert_header(("Cookie", browser.header()));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let resp = test::call_service(app, req.to_request()).await;
    browser.absorb(&resp);
    resp
}

/// The account page's HTML (200) and its CSRF token.
async fn page(app: &impl App, browser: &mut Browser) -> (String, String) {
    let resp = get(app, browser, "/account").await;
    assert_eq!(resp.status().as_u16(), 200);
    let html = body_text(resp).await;
    let csrf = hidden(&html, "csrf");
    (html, csrf)
}

fn assert_html_headers(resp: &actix_web::dev::ServiceResponse) {
    let h = resp.headers();
    let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script on the page: {csp}");
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(h.get("cache-control").unwrap(), "no-store");
    assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer");
    assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
}

async fn count(env: &Env, sql: &'static str, args: &[&str]) -> i64 {
    env.count_with(sql, args.iter().map(|s| s.to_string()).collect())
        .await
}

#[actix_web::test]
async fn without_a_session_the_page_signs_in_and_comes_back() {
    let w = World::new().await;
    let app = w.env.app().await;
    let mut browser = Browser::default();
    let resp = get(&app, &mut browser, "/account").await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_html_headers(&resp);
    let to = resp.headers().get("location").unwrap().to_str().unwrap();
    assert!(to.starts_with("/login?interaction="), "{to}");
    assert!(
        browser.get("deputy_browser").is_some(),
        "bound to this browser"
    );
    let to = to.to_string();
    // Another browser cannot open that login form.
    let resp = get(&app, &mut Browser::default(), &to).await;
    assert_eq!(resp.status().as_u16(), 403);
    let resp = get(&app, &mut browser, &to).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_html_headers(&resp);
    let html = body_text(resp).await;
    assert!(
        html.contains("Sign in to continue to your account"),
        "{html}"
    );
    // The account sign-in is no consent: that form refuses it.
    let consent = post(
        &app,
        &mut browser,
        "/consent",
        &format!(
            "interaction={}&csrf={}&decision=allow",
            hidden(&html, "interaction"),
            hidden(&html, "csrf")
        ),
        &[],
    )
    .await;
    assert_eq!(consent.status().as_u16(), 403);
    let login = format!(
        "interaction={}&csrf={}&username=alice&password={}",
        hidden(&html, "interaction"),
        hidden(&html, "csrf"),
        enc(PASSWORD)
    );
    let resp = post(&app, &mut browser, "/login", &login, &[]).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers().get("location").unwrap(), "/account");
    assert!(browser.get("deputy_session").is_some());
    // The sign-in is spent: posting it again is refused.
    let again = post(&app, &mut Browser::default(), "/login", &login, &[]).await;
    assert_eq!(again.status().as_u16(), 403);
    let resp = get(&app, &mut browser, "/account").await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_html_headers(&resp);
    let html = body_text(resp).await;
    assert!(html.contains("id=\"username\">alice<"), "{html}");
    assert!(
        html.contains("id=\"requests-waiting\""),
        "the place kept for CIBA"
    );
    assert!(html.contains("id=\"no-access\""), "nothing held yet");
    // The login is in the activity, audited without a client.
    assert_eq!(
        count(
            &w.env,
            "SELECT count(*) FROM audit_events WHERE event = 'login' AND person = ?1 AND client_id IS NULL",
            &["sub-alice"]
        )
        .await,
        1
    );
    assert!(html.contains("data-event=\"login\""), "{html}");
}

#[actix_web::test]
async fn the_page_lists_each_client_with_its_consent_family_chain_and_task() {
    let w = World::new().await;
    let app = w.env.app().await;
    let mut browser = Browser::default();
    let held = w.delegate(&app, &mut browser, "alice").await;
    let (html, _) = page(&app, &mut browser).await;
    // Grouped by client, in client id order: agent-x then agent-y.
    let x = html
        .find("data-client-id=\"agent-x\"")
        .expect("agent-x listed");
    let y = html
        .find("data-client-id=\"agent-y\"")
        .expect("agent-y listed");
    assert!(x < y);
    let (agent_x, agent_y) = (&html[x..y], &html[y..]);
    assert!(agent_x.contains("Agent X"), "{agent_x}");
    assert!(agent_x.contains("<span class=\"badge agent\">agent</span>"));
    assert!(agent_x.contains("notes:read") && agent_x.contains("You allowed"));
    assert!(agent_x.contains("Stays signed in (refresh)"), "{agent_x}");
    assert!(agent_x.contains("1 live access token,"), "{agent_x}");
    // agent-x holds hop1 (task ticket-42); agent-y's hop2 hangs from it.
    assert!(agent_x.contains("you → agent-x</td>"), "{agent_x}");
    assert!(agent_x.contains("Agents acting through this access"));
    assert!(
        agent_x.contains("you → agent-x → agent-y</td>"),
        "{agent_x}"
    );
    assert!(agent_x.contains("name=\"task\" value=\"ticket-42\""));
    assert!(agent_y.contains("you → agent-x → agent-y</td>"));
    assert!(agent_y.contains(NOTES));
    assert!(
        !agent_y.contains("You allowed"),
        "agent-y was never allowed by alice"
    );
    // No token value, refresh token hash or session secret in the page.
    let secrets: Vec<String> = w
        .env
        .state
        .store
        .read(|c| {
            let mut v = Vec::new();
            for r in c.query("SELECT token_hash FROM refresh_tokens", &[])? {
                v.push(r.get::<String>(0)?);
            }
            Ok(v)
        })
        .await
        .unwrap();
    for s in secrets {
        assert!(!html.contains(&s));
    }
    assert!(!html.contains(browser.get("deputy_session").unwrap()));
    for t in [
        &held.person_token,
        &held.refresh_token,
        &held.hop1,
        &held.hop2,
    ] {
        assert!(!html.contains(t.as_str()), "no token in the page");
    }
    // Activity: the exchanges done for alice, with chain and task.
    assert!(html.contains("Token for an agent acting for you"), "{html}");
    assert!(
        html.contains("data-label=\"Task\"><bdi>ticket-42</bdi></td>"),
        "{html}"
    );
    // Bob holds nothing, and sees none of alice's.
    let mut bob = Browser::default();
    sign_in_bob(&w, &app, &mut bob).await;
    let (bob_html, _) = page(&app, &mut bob).await;
    assert!(bob_html.contains("id=\"no-access\""), "{bob_html}");
    assert!(!bob_html.contains("ticket-42"));
}

/// Bob signs in through the account page (no client involved).
async fn sign_in_bob(_w: &World, app: &impl App, browser: &mut Browser) {
    let resp = get(app, browser, "/account").await;
    let to = resp
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let html = body_text(get(app, browser, &to).await).await;
    let resp = post(
        app,
        browser,
        "/login",
        &format!(
            "interaction={}&csrf={}&username=bob&password={}",
            hidden(&html, "interaction"),
            hidden(&html, "csrf"),
            enc(PASSWORD)
        ),
        &[],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
}

#[actix_web::test]
async fn withdrawing_a_task_ends_its_tree_only_and_is_idempotent() {
    let w = World::new().await;
    let app = w.env.app().await;
    let mut browser = Browser::default();
    let held = w.delegate(&app, &mut browser, "alice").await;
    assert!(w.active(&app, "agent-x", &held.hop1).await);
    assert!(w.active(&app, "agent-y", &held.hop2).await);
    let (_, csrf) = page(&app, &mut browser).await;
    let body = format!("csrf={csrf}&client_id=agent-x&task={TASK}");
    let resp = post(&app, &mut browser, "/account/withdraw", &body, &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_html_headers(&resp);
    let html = body_text(resp).await;
    assert!(
        html.contains("Stopped the task “ticket-42” of agent-x: 2 tokens revoked."),
        "{html}"
    );
    // hop1 and the token derived from it, at once; agent-x's own access stays.
    assert!(!w.active(&app, "agent-x", &held.hop1).await);
    assert!(!w.active(&app, "agent-y", &held.hop2).await);
    assert!(w.active(&app, "agent-x", &held.person_token).await);
    assert_eq!(
        count(
            &w.env,
            "SELECT count(*) FROM tokens WHERE revoked_reason = 'task_withdrawn'",
            &[]
        )
        .await,
        2
    );
    // Audited once, as the person's own act.
    let events = "SELECT count(*) FROM audit_events WHERE event = 'task_withdrawn' \
         AND mode = 'person' AND person = ?1 AND task = ?2 AND client_id = 'agent-x'";
    assert_eq!(count(&w.env, events, &["sub-alice", TASK]).await, 1);
    // Again: nothing left, nothing written.
    let resp = post(&app, &mut browser, "/account/withdraw", &body, &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(body_text(resp).await.contains("held nothing for the task"));
    assert_eq!(count(&w.env, events, &["sub-alice", TASK]).await, 1);
}

/// agent-y holds hop2, which keeps hop1's task, and was sent hop1 itself
/// (addressed to it, so it may exchange it, RFC 8693 §2.1). Stopping the
/// task on agent-y's card ends both, so agent-y cannot exchange hop1 again
/// for a fresh token of the task; agent-x's own access stays.
#[actix_web::test]
async fn stopping_a_task_of_the_next_agent_ends_what_it_was_sent_too() {
    let w = World::new().await;
    let app = w.env.app().await;
    let mut browser = Browser::default();
    let held = w.delegate(&app, &mut browser, "alice").await;
    let (_, hop2) = peek(&held.hop2);
    assert_eq!(hop2["task"], TASK, "hop2 keeps hop1's task");
    let (_, csrf) = page(&app, &mut browser).await;
    let body = format!("csrf={csrf}&client_id=agent-y&task={TASK}");
    let resp = post(&app, &mut browser, "/account/withdraw", &body, &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
    let html = body_text(resp).await;
    assert!(
        html.contains("Stopped the task “ticket-42” of agent-y: 2 tokens revoked."),
        "{html}"
    );
    assert!(!w.active(&app, "agent-x", &held.hop1).await);
    assert!(!w.active(&app, "agent-y", &held.hop2).await);
    assert!(w.active(&app, "agent-x", &held.person_token).await);
    let again = w
        .token_response(
            &app,
            format!(
                "grant_type={TE}&{}&subject_token={}&subject_token_type={AT}&resource={}",
                w.auth("agent-y"),
                held.hop1,
                enc(NOTES)
            ),
        )
        .await;
    assert_eq!(
        (again.0, again.1["error"].as_str()),
        (400, Some("invalid_request")),
        "{:?}",
        again.1
    );
}

#[actix_web::test]
async fn withdrawing_a_client_ends_its_consent_family_and_every_chain_from_it() {
    let w = World::new().await;
    let app = w.env.app().await;
    let mut browser = Browser::default();
    let held = w.delegate(&app, &mut browser, "alice").await;
    let live =
        "SELECT count(*) FROM tokens WHERE subject = ?1 AND revoked_at IS NULL AND expires_at > 0";
    // Access, ID and refresh token records from the code; hop1; hop2.
    assert_eq!(count(&w.env, live, &["sub-alice"]).await, 5);
    let (_, csrf) = page(&app, &mut browser).await;
    let body = format!("csrf={csrf}&client_id=agent-x");
    let resp = post(&app, &mut browser, "/account/withdraw", &body, &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
    let html = body_text(resp).await;
    assert!(
        html.contains(
            "Withdrew agent-x: your consent forgotten, 5 tokens revoked, 1 sign-in ended."
        ),
        "{html}"
    );
    assert!(html.contains("id=\"no-access\""), "nothing left: {html}");
    for (holder, t) in [
        ("agent-x", &held.person_token),
        ("agent-x", &held.hop1),
        ("agent-y", &held.hop2),
        ("agent-x", &held.refresh_token),
    ] {
        assert!(!w.active(&app, holder, t).await, "{holder}");
    }
    assert_eq!(count(&w.env, live, &["sub-alice"]).await, 0);
    assert_eq!(
        count(
            &w.env,
            "SELECT count(*) FROM consent_scopes WHERE user_id = ?1",
            &["sub-alice"]
        )
        .await,
        0
    );
    // Refresh no longer works (RFC 9700 §4.14.2: the family is gone).
    let (s, b) = json_of(
        test::call_service(
            &app,
            form_post(
                "/token",
                &format!(
                    "grant_type=refresh_token&refresh_token={}&{}",
                    held.refresh_token,
                    w.auth("agent-x")
                ),
            )
            .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));
    let events = "SELECT count(*) FROM audit_events WHERE event = 'consent_withdrawn' \
         AND mode = 'person' AND person = ?1 AND client_id = 'agent-x' AND detail LIKE '%\"via\":\"account\"%'";
    assert_eq!(count(&w.env, events, &["sub-alice"]).await, 1);
    // Idempotent: a repeat changes and records nothing.
    let resp = post(&app, &mut browser, "/account/withdraw", &body, &[]).await;
    assert!(body_text(resp).await.contains("nothing to withdraw"));
    assert_eq!(count(&w.env, events, &["sub-alice"]).await, 1);
}

#[actix_web::test]
async fn an_agent_holding_only_delegated_access_can_be_withdrawn() {
    let w = World::new().await;
    let app = w.env.app().await;
    let mut browser = Browser::default();
    let held = w.delegate(&app, &mut browser, "alice").await;
    let (_, csrf) = page(&app, &mut browser).await;
    let body = format!("csrf={csrf}&client_id=agent-y");
    let resp = post(&app, &mut browser, "/account/withdraw", &body, &[]).await;
    let html = body_text(resp).await;
    // hop2 (held by agent-y) and hop1 (addressed to agent-y, which could
    // exchange it again, RFC 8693 §2.1); agent-x's own access stays.
    assert!(
        html.contains("Withdrew agent-y: no remembered consent, 2 tokens revoked."),
        "{html}"
    );
    assert!(!w.active(&app, "agent-y", &held.hop2).await);
    assert!(!w.active(&app, "agent-x", &held.hop1).await);
    assert!(w.active(&app, "agent-x", &held.person_token).await);
    assert!(html.contains("data-client-id=\"agent-x\""));
    assert!(!html.contains("data-client-id=\"agent-y\""));
}

#[actix_web::test]
async fn another_persons_client_and_task_cannot_be_withdrawn() {
    let w = World::new().await;
    let app = w.env.app().await;
    let mut alice = Browser::default();
    let held = w.delegate(&app, &mut alice, "alice").await;
    let mut bob = Browser::default();
    sign_in_bob(&w, &app, &mut bob).await;
    let (_, csrf) = page(&app, &mut bob).await;
    let before = count(&w.env, "SELECT count(*) FROM audit_events", &[]).await;
    for body in [
        format!("csrf={csrf}&client_id=agent-x"),
        format!("csrf={csrf}&client_id=agent-y"),
        format!("csrf={csrf}&client_id=agent-x&task={TASK}"),
    ] {
        let resp = post(&app, &mut bob, "/account/withdraw", &body, &[]).await;
        assert_eq!(resp.status().as_u16(), 200);
        let html = body_text(resp).await;
        assert!(html.contains("nothing"), "{html}");
    }
    assert_eq!(
        count(&w.env, "SELECT count(*) FROM audit_events", &[]).await,
        before
    );
    assert_eq!(
        count(
            &w.env,
            "SELECT count(*) FROM tokens WHERE revoked_at IS NOT NULL AND revoked_reason <> 'rotated'",
            &[]
        )
        .await,
        0
    );
    assert!(w.active(&app, "agent-y", &held.hop2).await);
    assert_eq!(
        count(
            &w.env,
            "SELECT count(*) FROM consent_scopes WHERE user_id = ?1",
            &["sub-alice"]
        )
        .await,
        4,
        "openid profile email notes:read"
    );
}

#[actix_web::test]
async fn forms_without_the_sessions_token_or_from_another_site_are_refused() {
    let w = World::new().await;
    let app = w.env.app().await;
    let mut alice = Browser::default();
    let held = w.delegate(&app, &mut alice, "alice").await;
    let (_, csrf) = page(&app, &mut alice).await;
    let mut bob = Browser::default();
    sign_in_bob(&w, &app, &mut bob).await;
    let (_, bob_csrf) = page(&app, &mut bob).await;
    assert_ne!(csrf, bob_csrf);
    let before = count(&w.env, "SELECT count(*) FROM audit_events", &[]).await;
    let refused: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("client_id=agent-x".into(), vec![]),
        ("csrf=&client_id=agent-x".into(), vec![]),
        ("csrf=wrong&client_id=agent-x".into(), vec![]),
        // Another session's token is no use in this one.
        (format!("csrf={bob_csrf}&client_id=agent-x"), vec![]),
        (
            format!("csrf={csrf}&client_id=agent-x"),
            vec![("Origin", "https://evil.example")],
        ),
        (
            format!("csrf={csrf}&client_id=agent-x"),
            vec![("Sec-Fetch-Site", "cross-site")],
        ),
    ];
    for (body, headers) in &refused {
        for path in ["/account/withdraw", "/account/signout-everywhere"] {
            let resp = post(&app, &mut alice, path, body, headers).await;
            assert_eq!(resp.status().as_u16(), 403, "{path} {body} {headers:?}");
            assert_html_headers(&resp);
        }
    }
    // Without a session at all.
    let resp = post(
        &app,
        &mut Browser::default(),
        "/account/withdraw",
        &format!("csrf={csrf}&client_id=agent-x"),
        &[],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 403);
    // A valid form with a bad field: 400, and nothing changes either.
    for body in [
        format!("csrf={csrf}"),
        format!("csrf={csrf}&client_id=agent-x&task=%01"),
        format!("csrf={csrf}&client_id=agent-x&task={}", "t".repeat(129)),
    ] {
        let resp = post(&app, &mut alice, "/account/withdraw", &body, &[]).await;
        assert_eq!(resp.status().as_u16(), 400, "{body}");
    }
    // Nothing changed.
    assert_eq!(
        count(&w.env, "SELECT count(*) FROM audit_events", &[]).await,
        before
    );
    assert_eq!(count(&w.env, "SELECT count(*) FROM sessions", &[]).await, 2);
    assert!(w.active(&app, "agent-y", &held.hop2).await);
    // The same form from this origin, with the right token, is accepted.
    let resp = post(
        &app,
        &mut alice,
        "/account/withdraw",
        &format!("csrf={csrf}&client_id=agent-x&task={TASK}"),
        &[("Origin", ISSUER), ("Sec-Fetch-Site", "same-origin")],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(!w.active(&app, "agent-y", &held.hop2).await);
    // A form on a no-referrer page is sent with `Origin: null`; Fetch
    // Metadata still says same-origin (what Chromium sends).
    let resp = post(
        &app,
        &mut alice,
        "/account/withdraw",
        &format!("csrf={csrf}&client_id=agent-x"),
        &[("Origin", "null"), ("Sec-Fetch-Site", "same-origin")],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(!w.active(&app, "agent-x", &held.person_token).await);
}

#[actix_web::test]
async fn signing_out_everywhere_ends_every_session_and_family_of_the_person() {
    let w = World::new().await;
    let app = w.env.app().await;
    let mut alice = Browser::default();
    let held = w.delegate(&app, &mut alice, "alice").await;
    let mut phone = Browser::default();
    let mut bob = Browser::default();
    sign_in_bob(&w, &app, &mut bob).await;
    // Alice on a second device, through the account page.
    let resp = get(&app, &mut phone, "/account").await;
    let to = resp
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let html = body_text(get(&app, &mut phone, &to).await).await;
    let login = format!(
        "interaction={}&csrf={}&username=alice&password={}",
        hidden(&html, "interaction"),
        hidden(&html, "csrf"),
        enc(PASSWORD)
    );
    assert_eq!(
        post(&app, &mut phone, "/login", &login, &[])
            .await
            .status()
            .as_u16(),
        303
    );
    let sessions = "SELECT count(*) FROM sessions WHERE user_id = ?1";
    assert_eq!(count(&w.env, sessions, &["sub-alice"]).await, 2);
    let (_, csrf) = page(&app, &mut phone).await;
    let resp = post(
        &app,
        &mut phone,
        "/account/signout-everywhere",
        &format!("csrf={csrf}"),
        &[],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_html_headers(&resp);
    let cleared = resp
        .response()
        .cookies()
        .find(|c| c.name() == "deputy_session")
        .expect("the session cookie is cleared");
    assert_eq!(cleared.value(), "");
    let html = body_text(resp).await;
    assert!(html.contains("Signed out everywhere"), "{html}");
    assert!(
        html.contains("2 sessions ended, 5 tokens revoked"),
        "{html}"
    );
    assert_eq!(count(&w.env, sessions, &["sub-alice"]).await, 0);
    assert_eq!(count(&w.env, sessions, &["sub-bob"]).await, 1, "bob stays");
    for (holder, t) in [
        ("agent-x", &held.person_token),
        ("agent-x", &held.refresh_token),
        ("agent-x", &held.hop1),
        ("agent-y", &held.hop2),
    ] {
        assert!(!w.active(&app, holder, t).await, "{holder}");
    }
    // Consent stays; the page now asks to sign in again.
    assert_eq!(
        count(
            &w.env,
            "SELECT count(*) FROM consent_scopes WHERE user_id = ?1",
            &["sub-alice"]
        )
        .await,
        4,
        "openid profile email notes:read"
    );
    assert_eq!(
        get(&app, &mut alice, "/account").await.status().as_u16(),
        303
    );
    assert_eq!(
        count(
            &w.env,
            "SELECT count(*) FROM audit_events WHERE event = 'signed_out_everywhere' \
             AND mode = 'person' AND person = ?1",
            &["sub-alice"]
        )
        .await,
        1
    );
}

#[actix_web::test]
async fn activity_pages_newest_first_with_a_cursor() {
    let w = World::new().await;
    let app = w.env.app().await;
    let mut alice = Browser::default();
    sign_in_bob(&w, &app, &mut Browser::default()).await;
    // 30 events of alice's (and bob's login, which she never sees).
    w.env
        .state
        .store
        .write(|c| {
            for i in 0..29 {
                let mut e = deputy::audit::AuditEvent::new(
                    T0 + i,
                    "token_exchange",
                    deputy::audit::Mode::Delegated,
                )
                .person(Some("sub-alice"));
                e.client_id = Some("agent-x".into());
                e.task = Some(format!("task-{i:02}"));
                e.actor_chain = Some(r#"{"sub":"agent-x"}"#.into());
                deputy::store::audit::insert(c, &e)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    // Her login through the account page is the 30th, the newest.
    let resp = get(&app, &mut alice, "/account").await;
    let to = resp
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let html = body_text(get(&app, &mut alice, &to).await).await;
    let login = format!(
        "interaction={}&csrf={}&username=alice&password={}",
        hidden(&html, "interaction"),
        hidden(&html, "csrf"),
        enc(PASSWORD)
    );
    post(&app, &mut alice, "/login", &login, &[]).await;
    let (html, _) = page(&app, &mut alice).await;
    assert_eq!(html.matches("<tr data-event=").count(), 20, "{html}");
    assert!(html.find("data-event=\"login\"").unwrap() < html.find("task-28").unwrap());
    assert!(html.contains("task-10") && !html.contains("task-09"));
    assert!(html.contains("you → agent-x"));
    let older = html.split("href=\"/account?before=").nth(1).unwrap();
    let cursor = &older[..older.find('"').unwrap()];
    let resp = get(&app, &mut alice, &format!("/account?before={cursor}")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let html = body_text(resp).await;
    assert_eq!(html.matches("<tr data-event=").count(), 10, "{html}");
    assert!(html.contains("task-09") && html.contains("task-00") && !html.contains("task-10"));
    assert!(!html.contains("id=\"older\""), "the last page");
    assert!(html.contains("id=\"newest\""));
    assert!(
        !html.contains("data-event=\"login\""),
        "bob's login is not hers"
    );
    for bad in [
        "/account?before=x",
        "/account?before=0",
        "/account?before=-3",
    ] {
        assert_eq!(
            get(&app, &mut alice, bad).await.status().as_u16(),
            400,
            "{bad}"
        );
    }
}
