//! Token exchange (RFC 8693): delegation tokens that only narrow.

use actix_web::test;
use deputy::model::{AuthMethod, ClientKind, GrantType};
use deputy::policy::delegation::DelegationRule;
use deputy::secret::{hash_secret, Argon2Profile};
use serde_json::{json, Value};

use crate::people::*;
use crate::support::*;

const TE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange";
const AT: &str = "urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";
const NOTES: &str = "https://notes.example";

struct World {
    env: Env,
    secrets: std::collections::HashMap<String, String>,
}

impl World {
    async fn new() -> World {
        let env = Env::new();
        let mut secrets = std::collections::HashMap::new();
        for (id, kind, grants) in [
            (
                "agent-x",
                ClientKind::Agent,
                vec![GrantType::AuthorizationCode, GrantType::TokenExchange],
            ),
            ("agent-y", ClientKind::Agent, vec![GrantType::TokenExchange]),
            (
                "broker",
                ClientKind::Service,
                vec![GrantType::TokenExchange],
            ),
            (
                "svc",
                ClientKind::Service,
                vec![GrantType::ClientCredentials, GrantType::TokenExchange],
            ),
            (
                "stranger",
                ClientKind::Agent,
                vec![GrantType::TokenExchange],
            ),
            (
                "nogrant",
                ClientKind::Service,
                vec![GrantType::ClientCredentials],
            ),
        ] {
            let secret = deputy::secret::new_secret();
            let mut c = client(id, kind, AuthMethod::ClientSecretPost);
            c.grant_types = grants;
            c.redirect_uris = vec![REDIRECT.to_string()];
            c.scopes = vec![
                "notes:read".into(),
                "notes:write".into(),
                "calendar:read".into(),
            ];
            c.audiences = vec![NOTES.to_string()];
            c.secret_hash = Some(hash_secret(&secret, Argon2Profile::GeneratedSecret).unwrap());
            env.add_client(c).await;
            secrets.insert(id.to_string(), secret);
        }
        env.person("alice").await;
        World { env, secrets }
    }

    async fn rule(
        &self,
        actor: &str,
        audience: &str,
        scopes: &[&str],
        max_lifetime: i64,
        max_depth: i64,
        broker: Option<&str>,
    ) {
        let r = DelegationRule {
            id: format!("rule-{actor}-{}", audience.len()),
            actor: actor.into(),
            audience: audience.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            max_lifetime,
            max_depth,
            broker: broker.map(str::to_string),
            created_at: T0,
            require_dpop: false,
        };
        self.env
            .state
            .store
            .write(move |c| deputy::store::delegation::insert(c, &r))
            .await
            .unwrap();
    }

    fn auth(&self, id: &str) -> String {
        format!("client_id={id}&client_secret={}", enc(&self.secrets[id]))
    }
}

async fn person_token_for_x<S>(w: &World, app: &S) -> String
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let code = sign_in(app, &mut Browser::default(), "agent-x", "alice", "").await;
    let body = format!(
        "grant_type=authorization_code&code={code}&{}&code_verifier={VERIFIER}",
        w.auth("agent-x")
    );
    let (s, b) =
        json_of(test::call_service(app, form_post("/token", &body).to_request()).await).await;
    assert_eq!(s, 200, "{b}");
    b["access_token"].as_str().unwrap().to_string()
}

async fn exchange<S>(w: &World, app: &S, client: &str, subject: &str, extra: &str) -> (u16, Value)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let body = format!(
        "grant_type={TE}&{}&subject_token={subject}&subject_token_type={AT}{extra}",
        w.auth(client)
    );
    json_of(test::call_service(app, form_post("/token", &body).to_request()).await).await
}

/// Each answer of a race is a grant or the given refusal, nothing else.
fn granted_or(answers: &[(u16, Value)], error: &str, round: usize) {
    for (s, b) in answers {
        assert!(
            *s == 200 || (*s == 400 && b["error"] == error),
            "round {round}: {s} {b}"
        );
    }
}

fn claims(v: &Value) -> Value {
    peek(v["access_token"].as_str().unwrap()).1
}

#[actix_web::test]
async fn three_hop_chain_nests_act_and_only_narrows() {
    let w = World::new().await;
    w.rule(
        "agent-x",
        "agent-y",
        &["notes:read", "notes:write"],
        240,
        1,
        None,
    )
    .await;
    w.rule("agent-y", NOTES, &["notes:read"], 120, 2, None)
        .await;
    let app = w.env.app().await;
    let person_token = person_token_for_x(&w, &app).await;
    let p = peek(&person_token).1;

    let (s, hop1) = exchange(
        &w,
        &app,
        "agent-x",
        &person_token,
        "&audience=agent-y&task=ticket-42",
    )
    .await;
    assert_eq!(s, 200, "{hop1}");
    assert_eq!(
        hop1["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(hop1["token_type"], "Bearer");
    assert!(
        hop1.get("refresh_token").is_none(),
        "no refresh token, ever"
    );
    let c1 = claims(&hop1);
    assert_eq!(
        peek(hop1["access_token"].as_str().unwrap()).0["typ"],
        "at+jwt"
    );
    assert_eq!(c1["sub"], p["sub"], "sub stays the person");
    assert_eq!(c1["aud"], "agent-y");
    assert_eq!(c1["client_id"], "agent-x");
    assert_eq!(c1["act"], json!({"sub": "agent-x"}));
    assert_eq!(c1["task"], "ticket-42");
    assert_eq!(c1["auth_time"], p["auth_time"]);
    assert_eq!(
        c1["scope"], "notes:read",
        "the person granted notes:read only; the rule's notes:write adds nothing"
    );
    assert!(c1["exp"].as_i64().unwrap() <= p["exp"].as_i64().unwrap());

    let (s, hop2) = exchange(
        &w,
        &app,
        "agent-y",
        hop1["access_token"].as_str().unwrap(),
        "&resource=https%3A%2F%2Fnotes.example",
    )
    .await;
    assert_eq!(s, 200, "{hop2}");
    let c2 = claims(&hop2);
    assert_eq!(c2["sub"], p["sub"]);
    assert_eq!(c2["aud"], NOTES);
    assert_eq!(c2["client_id"], "agent-y");
    assert_eq!(
        c2["act"],
        json!({"sub": "agent-y", "act": {"sub": "agent-x"}})
    );
    assert_eq!(c2["scope"], "notes:read");
    assert!(c2["exp"].as_i64().unwrap() <= c1["exp"].as_i64().unwrap());
    assert_eq!(c2["exp"], T0 + 120);
    assert_eq!(
        c2["task"], "ticket-42",
        "a hop that names no task keeps its subject token's"
    );
    // Lineage is recorded: hop2's parent is hop1, hop1's parent is the person's token.
    let jti2 = c2["jti"].as_str().unwrap().to_string();
    let rec = w.env.token_record(&jti2).await;
    assert_eq!(rec.parent_jti.as_deref(), c1["jti"].as_str());
    assert_eq!(rec.rule_id.as_deref(), Some("rule-agent-y-21"));
    // Revoking the person's token kills every descendant.
    let root = p["jti"].as_str().unwrap().to_string();
    let n = w
        .env
        .state
        .store
        .write(move |c| deputy::store::tokens::revoke_tree(c, &root, T0, "test"))
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        w.env
            .count("SELECT count(*) FROM audit_events WHERE event = 'token_exchange' AND outcome = 'ok'")
            .await,
        2
    );
}

#[actix_web::test]
async fn broker_pattern_uses_the_actors_own_token() {
    let w = World::new().await;
    w.rule("svc", NOTES, &["notes:read"], 120, 2, Some("broker"))
        .await;
    let app = w.env.app().await;
    // The person's token is addressed to... svc? It was issued to agent-x; make one addressed to svc via a rule hop.
    w.rule("agent-x", "svc", &["notes:read"], 200, 1, None)
        .await;
    let person_token = person_token_for_x(&w, &app).await;
    let (_, to_svc) = exchange(&w, &app, "agent-x", &person_token, "&audience=svc").await;
    let subject = to_svc["access_token"].as_str().unwrap().to_string();
    // svc's own token.
    let (_, own) = json_of(
        test::call_service(
            &app,
            form_post(
                "/token",
                &format!("grant_type=client_credentials&{}", w.auth("svc")),
            )
            .to_request(),
        )
        .await,
    )
    .await;
    let actor_token = own["access_token"].as_str().unwrap();
    // The broker requests for svc.
    let (s, b) = exchange(
        &w,
        &app,
        "broker",
        &subject,
        &format!(
            "&audience={}&actor_token={actor_token}&actor_token_type={AT}",
            enc(NOTES)
        ),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let c = claims(&b);
    assert_eq!(c["client_id"], "broker");
    assert_eq!(c["act"], json!({"sub": "svc", "act": {"sub": "agent-x"}}));
    // Another client may not broker for svc.
    let (s, b) = exchange(
        &w,
        &app,
        "stranger",
        &subject,
        &format!(
            "&audience={}&actor_token={actor_token}&actor_token_type={AT}",
            enc(NOTES)
        ),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("unauthorized_client")));
    // svc itself may exchange directly.
    let (s, _) = exchange(
        &w,
        &app,
        "svc",
        &subject,
        &format!("&audience={}", enc(NOTES)),
    )
    .await;
    assert_eq!(s, 200);
    // The brokered token hangs from the actor token too: revoking svc's own
    // token (RFC 7009 §2.1) ends it, and the trace lists it as a descendant.
    let brokered = c["jti"].as_str().unwrap().to_string();
    let own_jti = peek(actor_token).1["jti"].as_str().unwrap().to_string();
    assert_eq!(
        w.env
            .token_record(&brokered)
            .await
            .actor_token_jti
            .as_deref(),
        Some(own_jti.as_str())
    );
    let j = own_jti.clone();
    let below = w
        .env
        .state
        .store
        .read(move |c| deputy::store::lineage::descendants(c, &j))
        .await
        .unwrap();
    assert_eq!(
        below.iter().map(|r| r.jti.as_str()).collect::<Vec<_>>(),
        [brokered.as_str()]
    );
    let n = w
        .env
        .state
        .store
        .write(move |c| deputy::store::tokens::revoke_tree(c, &own_jti, T0, "test"))
        .await
        .unwrap();
    assert_eq!(n, 2, "the actor token and the token brokered with it");
    assert!(w.env.token_record(&brokered).await.revoked_at.is_some());
}

#[actix_web::test]
async fn every_numbered_rule_refuses() {
    let w = World::new().await;
    w.rule(
        "agent-x",
        "agent-y",
        &["notes:read", "notes:write"],
        240,
        1,
        None,
    )
    .await;
    w.rule("agent-y", NOTES, &["notes:read"], 120, 1, None)
        .await;
    w.rule("stranger", NOTES, &["notes:read"], 120, 1, None)
        .await;
    let app = w.env.app().await;
    let person = person_token_for_x(&w, &app).await;
    let (_, hop1) = exchange(&w, &app, "agent-x", &person, "&audience=agent-y").await;
    let to_y = hop1["access_token"].as_str().unwrap().to_string();
    // svc's own client-credentials token, and its ID-token-free person flow pieces.
    let (_, svc_own) = json_of(
        test::call_service(
            &app,
            form_post(
                "/token",
                &format!("grant_type=client_credentials&{}", w.auth("svc")),
            )
            .to_request(),
        )
        .await,
    )
    .await;
    let svc_token = svc_own["access_token"].as_str().unwrap().to_string();
    let code = sign_in(&app, &mut Browser::default(), "agent-x", "alice", "").await;
    let (_, full) = json_of(
        test::call_service(
            &app,
            form_post(
                "/token",
                &format!(
                    "grant_type=authorization_code&code={code}&{}&code_verifier={VERIFIER}",
                    w.auth("agent-x")
                ),
            )
            .to_request(),
        )
        .await,
    )
    .await;
    let id_token = full["id_token"].as_str().unwrap().to_string();

    let cases: Vec<(&str, &str, String, &str, u16)> = vec![
        // (name, client, subject, extra, expected error)
        ("scope widening beyond the rule", "agent-x", person.clone(), "&audience=agent-y&scope=calendar%3Aread", 400),
        ("target with no rule", "agent-x", person.clone(), "&audience=https%3A%2F%2Fbank.example", 400),
        ("actor with no rule", "svc", svc_token.clone(), "&audience=agent-y", 400),
        ("token not addressed to the actor", "stranger", person.clone(), "&audience=https%3A%2F%2Fnotes.example", 400),
        ("ID token as subject", "agent-x", id_token.clone(), "&audience=agent-y", 400),
        ("garbage subject", "agent-x", "not.a.token".into(), "&audience=agent-y", 400),
        ("actor_token without its type", "agent-x", person.clone(), "&audience=agent-y&actor_token=x", 400),
        ("actor token not the actor's own", "broker", person.clone(), "&audience=agent-y&actor_token=PERSON&actor_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token", 400),
        ("two targets", "agent-x", person.clone(), "&audience=agent-y&resource=https%3A%2F%2Fnotes.example", 400),
        ("no target", "agent-x", person.clone(), "", 400),
        ("refresh token requested", "agent-x", person.clone(), "&audience=agent-y&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Arefresh_token", 400),
        ("bad task", "agent-x", person.clone(), "&audience=agent-y&task=%0Abad", 400),
        ("depth over the limit", "agent-y", to_y.clone(), "&audience=https%3A%2F%2Fnotes.example", 400),
    ];
    let expected_codes = [
        "invalid_scope",
        "invalid_target",
        "invalid_target",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
    ];
    for ((name, client, subject, extra, status), code) in cases.into_iter().zip(expected_codes) {
        let extra = extra.replace("PERSON", &person);
        let (s, b) = exchange(&w, &app, client, &subject, &extra).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (status, Some(code)),
            "{name}: {b}"
        );
    }
    // A refresh-token-typed or unknown subject_token_type.
    let body = format!("grant_type={TE}&{}&subject_token={person}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token&audience=agent-y", w.auth("agent-x"));
    let (s, b) =
        json_of(test::call_service(&app, form_post("/token", &body).to_request()).await).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")));
    // A client not registered for the grant, and a failed authentication.
    let body = format!(
        "grant_type={TE}&{}&subject_token={person}&subject_token_type={AT}&audience=agent-y",
        w.auth("nogrant")
    );
    let (s, b) =
        json_of(test::call_service(&app, form_post("/token", &body).to_request()).await).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("unauthorized_client")));
    let body = format!("grant_type={TE}&client_id=agent-x&client_secret=wrong&subject_token={person}&subject_token_type={AT}&audience=agent-y");
    let (s, _) =
        json_of(test::call_service(&app, form_post("/token", &body).to_request()).await).await;
    assert_eq!(s, 401);
    // A service token (not addressed to agent-x) cannot be exchanged by agent-x.
    let (s, _) = exchange(&w, &app, "agent-x", &svc_token, "&audience=agent-y").await;
    assert_eq!(s, 400);
    // Every refusal is in the audit trail with its reason.
    let refused = w.env.count("SELECT count(*) FROM audit_events WHERE event = 'token_exchange' AND outcome = 'refused' AND reason IS NOT NULL").await;
    assert!(refused >= 14, "{refused}");
}

#[actix_web::test]
async fn lifetime_never_exceeds_subject_rule_or_request_and_revoked_or_expired_subjects_fail() {
    let w = World::new().await;
    w.rule("agent-x", "agent-y", &["notes:read"], 3600, 1, None)
        .await;
    let app = w.env.app().await;
    let person = person_token_for_x(&w, &app).await;
    let subject_exp = peek(&person).1["exp"].as_i64().unwrap();
    let (_, b) = exchange(&w, &app, "agent-x", &person, "&audience=agent-y").await;
    assert_eq!(
        claims(&b)["exp"].as_i64().unwrap(),
        subject_exp,
        "capped by the subject token"
    );
    let (_, b) = exchange(
        &w,
        &app,
        "agent-x",
        &person,
        "&audience=agent-y&requested_lifetime=30",
    )
    .await;
    assert_eq!(claims(&b)["exp"], T0 + 30);
    assert_eq!(b["expires_in"], 30);
    let (s, b) = exchange(
        &w,
        &app,
        "agent-x",
        &person,
        "&audience=agent-y&requested_lifetime=99999999999999999",
    )
    .await;
    assert_eq!(s, 200, "asking for more gets no more: {b}");
    assert_eq!(claims(&b)["exp"].as_i64().unwrap(), subject_exp);
    // Expired subject.
    w.env.clock.advance(subject_exp - T0);
    let (s, b) = exchange(&w, &app, "agent-x", &person, "&audience=agent-y").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")));
}

#[actix_web::test]
async fn revoked_subject_and_may_act_mismatch_are_refused() {
    let w = World::new().await;
    w.rule("agent-x", "agent-y", &["notes:read"], 300, 1, None)
        .await;
    w.rule("agent-y", NOTES, &["notes:read"], 300, 2, None)
        .await;
    let app = w.env.app().await;
    let person = person_token_for_x(&w, &app).await;
    // may_act names someone else: agent-y may not use it (RFC 8693 §4.4).
    let (s, b) = exchange(
        &w,
        &app,
        "agent-x",
        &person,
        "&audience=agent-y&may_act=stranger",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(claims(&b)["may_act"], json!({"sub": "stranger"}));
    // Kept in the record, so introspection and trace can show it.
    let jti = claims(&b)["jti"].as_str().unwrap().to_string();
    let rec = w.env.token_record(&jti).await;
    assert_eq!(rec.may_act.as_deref(), Some("stranger"));
    let (s, e) = exchange(
        &w,
        &app,
        "agent-y",
        b["access_token"].as_str().unwrap(),
        &format!("&audience={}", enc(NOTES)),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_request")));
    let (_, ok) = exchange(
        &w,
        &app,
        "agent-x",
        &person,
        "&audience=agent-y&may_act=agent-y",
    )
    .await;
    let (s, _) = exchange(
        &w,
        &app,
        "agent-y",
        ok["access_token"].as_str().unwrap(),
        &format!("&audience={}", enc(NOTES)),
    )
    .await;
    assert_eq!(s, 200);
    // Revoked subject.
    let jti = peek(&person).1["jti"].as_str().unwrap().to_string();
    w.env
        .state
        .store
        .write(move |c| deputy::store::tokens::revoke_tree(c, &jti, T0, "test"))
        .await
        .unwrap();
    let (s, b) = exchange(&w, &app, "agent-x", &person, "&audience=agent-y").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")));
}

#[actix_web::test]
async fn a_token_of_another_issuer_is_refused() {
    let w = World::new().await;
    w.rule("agent-x", "agent-y", &["notes:read"], 300, 1, None)
        .await;
    let app = w.env.app().await;
    // Same key, different issuer: only deputy's issuer is accepted.
    let ring = w.env.state.keys.ring();
    let foreign = deputy::token::sign(
        &ring,
        T0,
        "at+jwt",
        &json!({"iss": "https://evil.example", "sub": "x", "aud": "agent-x", "client_id": "agent-x", "exp": T0 + 100, "iat": T0, "jti": "f1", "scope": "notes:read"}),
    )
    .unwrap();
    let (s, b) = exchange(&w, &app, "agent-x", &foreign, "&audience=agent-y").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")));
    // Oversized subject token: refused as a bad request, quickly.
    let huge = "a".repeat(60_000);
    let (s, b) = exchange(&w, &app, "agent-x", &huge, "&audience=agent-y").await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_request")));
}

/// RFC 8693 §2.1 / README cascade: a revocation racing exchanges of the same
/// subject token leaves no active child. The exchange checks its subject on a
/// reader thread; without the re-check where the child is recorded, a child
/// written just after the cascade outlived its revoked parent.
#[actix_web::test]
async fn a_revocation_racing_exchanges_leaves_no_active_child() {
    let w = World::new().await;
    w.rule("agent-x", "agent-y", &["notes:read"], 300, 1, None)
        .await;
    let app = w.env.app().await;
    for round in 0..3 {
        let person = person_token_for_x(&w, &app).await;
        let parent = peek(&person).1["jti"].as_str().unwrap().to_string();
        let exchanges = futures_util::future::join_all(
            (0..24).map(|_| exchange(&w, &app, "agent-x", &person, "&audience=agent-y")),
        );
        let p = parent.clone();
        let revoke = async {
            for _ in 0..(round * 3 + 2) {
                actix_web::rt::task::yield_now().await;
            }
            w.env
                .state
                .store
                .write(move |c| deputy::store::tokens::revoke_tree(c, &p, T0, "test"))
                .await
                .unwrap()
        };
        let (answers, _) = futures_util::future::join(exchanges, revoke).await;
        granted_or(&answers, "invalid_request", round);
        let live = w
            .env
            .count_with(
                "SELECT COUNT(*) FROM tokens WHERE parent_jti = ?1 AND revoked_at IS NULL",
                vec![parent.clone()],
            )
            .await;
        assert_eq!(
            live, 0,
            "round {round}: children outlived their revoked parent"
        );
    }
}

/// Default deny holds at the moment of issue: a delegation rule removed while
/// exchanges under it are in flight lets none of them be recorded after the
/// removal (they get invalid_target), since rules are read on a reader thread.
#[actix_web::test]
async fn a_rule_removed_during_exchanges_issues_nothing_after_it() {
    let w = World::new().await;
    let app = w.env.app().await;
    for round in 0..3 {
        w.rule("agent-x", "agent-y", &["notes:read"], 300, 1, None)
            .await;
        let rule_id = "rule-agent-x-7".to_string();
        let person = person_token_for_x(&w, &app).await;
        let exchanges = futures_util::future::join_all(
            (0..24).map(|_| exchange(&w, &app, "agent-x", &person, "&audience=agent-y")),
        );
        let id = rule_id.clone();
        let remove = async {
            for _ in 0..(round * 3 + 2) {
                actix_web::rt::task::yield_now().await;
            }
            // Remove the rule and note how many tokens it had allowed.
            w.env
                .state
                .store
                .write(move |c| {
                    deputy::store::delegation::remove(c, &id)?;
                    c.scalar::<i64>(
                        "SELECT COUNT(*) FROM tokens WHERE rule_id = ?1",
                        deputy::args![&id],
                    )
                })
                .await
                .unwrap()
        };
        let (answers, mark) = futures_util::future::join(exchanges, remove).await;
        granted_or(&answers, "invalid_target", round);
        let after = w
            .env
            .count_with(
                "SELECT COUNT(*) FROM tokens WHERE rule_id = ?1",
                vec![rule_id.clone()],
            )
            .await;
        assert_eq!(after, mark, "round {round}: issued under a removed rule");
    }
}

/// The same race for an agent that authenticates with private_key_jwt: a
/// refusal decided where the child would be recorded is the exchange's own
/// error (RFC 8693 §2.2.2 invalid_request), never an `invalid_client` from
/// recording the request's assertion twice; and each assertion is recorded.
#[actix_web::test]
async fn a_revocation_racing_jwt_authenticated_exchanges_answers_invalid_request() {
    use josekit::jws::ES256;
    let w = World::new().await;
    let kp = ES256.generate_key_pair().unwrap();
    let mut jwk = kp.to_jwk_public_key();
    jwk.set_key_id("k1");
    let mut agent = client("agent-j", ClientKind::Agent, AuthMethod::PrivateKeyJwt);
    agent.jwks = Some(json!({"keys": [serde_json::to_value(jwk.as_ref()).unwrap()]}).to_string());
    agent.grant_types = vec![GrantType::TokenExchange];
    w.env.add_client(agent).await;
    w.rule("agent-x", "agent-j", &["notes:read"], 300, 2, None)
        .await;
    w.rule("agent-j", "agent-y", &["notes:read"], 300, 2, None)
        .await;
    let app = w.env.app().await;
    let mut refused = 0;
    for round in 0..6 {
        let person = person_token_for_x(&w, &app).await;
        let (_, hop) = exchange(&w, &app, "agent-x", &person, "&audience=agent-j").await;
        let subject = hop["access_token"].as_str().unwrap().to_string();
        let parent = peek(&subject).1["jti"].as_str().unwrap().to_string();
        let requests = (0..12).map(|i| {
            let jti = format!("race-{round}-{i}");
            let a = assertion(&kp, std_claims("agent-j", T0, &jti), json!({}));
            let body = format!(
                "grant_type={TE}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
                 &client_assertion={a}&subject_token={subject}&subject_token_type={AT}&audience=agent-y"
            );
            let app = &app;
            async move {
                json_of(test::call_service(app, form_post("/token", &body).to_request()).await)
                    .await
            }
        });
        let p = parent.clone();
        let revoke = async {
            for _ in 0..round * 2 {
                actix_web::rt::task::yield_now().await;
            }
            w.env
                .state
                .store
                .write(move |c| deputy::store::tokens::revoke_tree(c, &p, T0, "test"))
                .await
                .unwrap()
        };
        let (answers, _) =
            futures_util::future::join(futures_util::future::join_all(requests), revoke).await;
        for (s, b) in &answers {
            assert!(
                *s == 200 || (*s == 400 && b["error"] == "invalid_request"),
                "round {round}: {s} {b}"
            );
            refused += usize::from(*s != 200);
        }
    }
    assert!(refused > 0, "the revocation came after every exchange");
    assert_eq!(
        w.env
            .count("SELECT count(*) FROM used_assertions WHERE jti LIKE 'race-%'")
            .await,
        72
    );
}

/// An exchange tells a caller no more about a subject token than
/// introspection would (`{"active": false}`, RFC 7662 §2.2): unknown,
/// revoked, expired, foreign and not-entitled tokens get one identical
/// answer (RFC 8693 §2.2.2 `invalid_request`), while the audit trail keeps
/// each real reason.
#[actix_web::test]
async fn unknown_revoked_expired_foreign_and_not_entitled_subjects_answer_alike() {
    let w = World::new().await;
    w.rule("agent-x", "agent-y", &["notes:read"], 300, 1, None)
        .await;
    w.rule("stranger", "agent-y", &["notes:read"], 300, 1, None)
        .await;
    let app = w.env.app().await;
    let person = person_token_for_x(&w, &app).await;
    let mut answers = Vec::new();
    // Unknown: signed by deputy's key, never recorded.
    let ring = w.env.state.keys.ring();
    let unknown = deputy::token::sign(
        &ring,
        T0,
        "at+jwt",
        &json!({"iss": ISSUER, "sub": "x", "aud": "agent-x", "client_id": "agent-x", "exp": T0 + 100, "iat": T0, "jti": "never-issued", "scope": "notes:read"}),
    )
    .unwrap();
    answers.push((
        "unknown",
        exchange(&w, &app, "agent-x", &unknown, "&audience=agent-y").await,
    ));
    // Foreign: issued to agent-x, presented by another agent with a rule.
    answers.push((
        "foreign",
        exchange(&w, &app, "stranger", &person, "&audience=agent-y").await,
    ));
    // Not entitled: may_act names someone else (RFC 8693 §4.4).
    let (_, limited) = exchange(
        &w,
        &app,
        "agent-x",
        &person,
        "&audience=agent-y&may_act=agent-y",
    )
    .await;
    answers.push((
        "not entitled",
        exchange(
            &w,
            &app,
            "agent-x",
            limited["access_token"].as_str().unwrap(),
            "&audience=agent-y",
        )
        .await,
    ));
    // Revoked.
    let (_, to_revoke) = exchange(&w, &app, "agent-x", &person, "&audience=agent-y").await;
    let revoked = to_revoke["access_token"].as_str().unwrap().to_string();
    let jti = claims(&to_revoke)["jti"].as_str().unwrap().to_string();
    w.env
        .state
        .store
        .write(move |c| deputy::store::tokens::revoke_tree(c, &jti, T0, "test"))
        .await
        .unwrap();
    answers.push((
        "revoked",
        exchange(&w, &app, "agent-y", &revoked, "&audience=agent-y").await,
    ));
    // Expired (last: it moves the clock).
    w.env.clock.advance(400);
    answers.push((
        "expired",
        exchange(&w, &app, "agent-x", &person, "&audience=agent-y").await,
    ));
    let (_, (s0, b0)) = &answers[0];
    assert_eq!(*s0, 400);
    assert_eq!(b0["error"], "invalid_request");
    for (what, (s, b)) in &answers {
        assert_eq!((s, b), (s0, b0), "{what} answers like an unknown token");
    }
    // The trail says what really happened.
    let reasons: Vec<String> = w
        .env
        .state
        .store
        .read(|c| {
            c.query(
                "SELECT reason FROM audit_events WHERE event = 'token_exchange' AND outcome = 'refused' ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect()
        })
        .await
        .unwrap();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(
        reasons[1].contains("neither issued nor addressed"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("may_act"), "{reasons:?}");
    assert!(reasons[3].contains("revoked or unknown"), "{reasons:?}");
}

/// A busy store is a temporary failure of ours: 503 `temporarily_unavailable`,
/// not recorded as a refused exchange, and the request's client assertion
/// is still spent once the store answers again (RFC 7523 §3 item 7).
#[actix_web::test]
async fn a_busy_store_during_an_exchange_is_503_and_not_a_recorded_refusal() {
    let w = World::new().await;
    w.rule("agent-x", "agent-y", &["notes:read"], 300, 1, None)
        .await;
    let app = w.env.app().await;
    let person = person_token_for_x(&w, &app).await;
    // Another process holds the write lock longer than the busy timeout (5 s).
    let holder = w
        .env
        .hold_write_lock(std::time::Duration::from_millis(6500));
    let before = w
        .env
        .count("SELECT count(*) FROM audit_events WHERE event = 'token_exchange'")
        .await;
    let (s, b) = exchange(&w, &app, "agent-x", &person, "&audience=agent-y").await;
    holder.join().unwrap();
    assert_eq!(
        (s, b["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{b}"
    );
    assert_eq!(
        w.env
            .count("SELECT count(*) FROM audit_events WHERE event = 'token_exchange'")
            .await,
        before,
        "a busy store is not an exchange refused by policy"
    );
    // Once the store answers, the same request works (nothing was half-done).
    let (s, b) = exchange(&w, &app, "agent-x", &person, "&audience=agent-y").await;
    assert_eq!(s, 200, "{b}");
}
