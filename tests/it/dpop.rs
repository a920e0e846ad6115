//! DPoP, sender-constrained tokens (RFC 9449), through the endpoints: bound
//! tokens from every grant, proofs spent once, bound refresh families and
//! codes, /userinfo with proofs, nonces, required DPoP, token exchange.

use actix_web::test;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use deputy::model::{AuthMethod, ClientKind, GrantType};
use deputy::policy::delegation::DelegationRule;
use josekit::jwk::alg::ec::EcKeyPair;
use josekit::jws::{JwsSigner, ES256};
use serde_json::{json, Value};

use crate::people::*;
use crate::support::*;

/// A client's DPoP key and the proofs it makes.
pub struct ProofKey {
    pair: EcKeyPair,
}

impl ProofKey {
    pub fn new() -> Self {
        ProofKey {
            pair: ES256.generate_key_pair().unwrap(),
        }
    }

    pub fn public(&self) -> Value {
        serde_json::to_value(self.pair.to_jwk_public_key().as_ref()).unwrap()
    }

    /// RFC 7638 thumbprint, computed here independently of deputy.
    pub fn jkt(&self) -> String {
        let p = self.public();
        let canonical = format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            p["crv"].as_str().unwrap(),
            p["x"].as_str().unwrap(),
            p["y"].as_str().unwrap()
        );
        URL_SAFE_NO_PAD.encode(openssl::sha::sha256(canonical.as_bytes()))
    }

    /// A proof with these claims (jti random unless given).
    pub fn sign(&self, claims: Value) -> String {
        let mut claims = claims;
        if claims.get("jti").is_none() {
            claims["jti"] = json!(deputy::secret::random_token(12));
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public()});
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signer = ES256
            .signer_from_jwk(&self.pair.to_jwk_private_key())
            .unwrap();
        let sig = signer.sign(format!("{h}.{p}").as_bytes()).unwrap();
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// A proof for `method` at deputy's `path`, made at `iat`.
    pub fn proof(&self, method: &str, path: &str, iat: i64) -> String {
        self.sign(json!({"htm": method, "htu": format!("{ISSUER}{path}"), "iat": iat}))
    }

    /// A proof for a resource request with `token` (`ath`).
    pub fn proof_for(&self, method: &str, path: &str, iat: i64, token: &str) -> String {
        let ath = URL_SAFE_NO_PAD.encode(openssl::sha::sha256(token.as_bytes()));
        self.sign(json!({"htm": method, "htu": format!("{ISSUER}{path}"), "iat": iat, "ath": ath}))
    }
}

type Answer = (u16, Value, actix_web::http::header::HeaderMap);

async fn post<S>(app: &S, path: &str, body: &str, headers: &[(&str, String)]) -> Answer
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let mut req = form_post(path, body);
    for (k, v) in headers {
        req = req.append_header((*k, v.as_str()));
    }
    let resp = test::call_service(app, req.to_request()).await;
    let headers = resp.headers().clone();
    let (s, b) = json_of(resp).await;
    (s, b, headers)
}

const CC: &str = "grant_type=client_credentials&scope=read&resource=https%3A%2F%2Fapi.example";

fn cc_auth(secret: &str) -> String {
    format!("{CC}&client_id=svc&client_secret={}", enc(secret))
}

#[actix_web::test]
async fn a_proof_binds_the_token_and_introspection_shows_the_key_rfc9449_s5_s6() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretPost)
        .await;
    let app = env.app().await;
    let key = ProofKey::new();
    let (s, body, _) = post(
        &app,
        "/token",
        &cc_auth(&secret),
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let at = body["access_token"].as_str().unwrap().to_string();
    let claims = peek(&at).1;
    assert_eq!(claims["cnf"], json!({"jkt": key.jkt()}));
    let record = env.token_record(claims["jti"].as_str().unwrap()).await;
    assert_eq!(record.cnf_jkt.as_deref(), Some(key.jkt().as_str()));
    // Introspection by the token's own client (RFC 9449 §6.2).
    let (s, intro, _) = post(
        &app,
        "/introspect",
        &format!("token={at}&client_id=svc&client_secret={}", enc(&secret)),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{intro}");
    assert_eq!(intro["active"], true);
    assert_eq!(intro["token_type"], "DPoP");
    assert_eq!(intro["cnf"], json!({"jkt": key.jkt()}));
    // Without a proof: a bearer token, no cnf.
    let (s, body, _) = post(&app, "/token", &cc_auth(&secret), &[]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(peek(body["access_token"].as_str().unwrap())
        .1
        .get("cnf")
        .is_none());
}

#[actix_web::test]
async fn defective_proofs_are_refused_and_issue_nothing_rfc9449_s4_3() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretPost)
        .await;
    let app = env.app().await;
    let key = ProofKey::new();
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("wrong htm", vec![("DPoP", key.proof("GET", "/token", T0))]),
        (
            "wrong htu",
            vec![("DPoP", key.proof("POST", "/userinfo", T0))],
        ),
        (
            "stale iat",
            vec![("DPoP", key.proof("POST", "/token", T0 - 61))],
        ),
        ("not a JWT", vec![("DPoP", "abc".to_string())]),
        (
            "two headers",
            vec![
                ("DPoP", key.proof("POST", "/token", T0)),
                ("DPoP", key.proof("POST", "/token", T0)),
            ],
        ),
    ];
    for (what, headers) in cases {
        let (s, body, _) = post(&app, "/token", &cc_auth(&secret), &headers).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{what}: {body}"
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM tokens").await, 0);
}

#[actix_web::test]
async fn a_proof_is_accepted_once_even_under_a_race_rfc9449_s11_1() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretPost)
        .await;
    let app = env.app().await;
    let key = ProofKey::new();
    let proof = key.proof("POST", "/token", T0);
    let body = cc_auth(&secret);
    let headers: Vec<Vec<(&str, String)>> =
        (0..20).map(|_| vec![("DPoP", proof.clone())]).collect();
    let answers =
        futures_util::future::join_all(headers.iter().map(|h| post(&app, "/token", &body, h)))
            .await;
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        answers
            .iter()
            .map(|a| (a.0, a.1.clone()))
            .collect::<Vec<_>>()
    );
    for (s, b, _) in answers.iter().filter(|a| a.0 != 200) {
        assert_eq!(
            (*s, b["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{b}"
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM tokens").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM dpop_proofs").await, 1);
    // Still refused after a restart (the record is in the store).
    drop(app);
    let env2 = Env::in_dir(env.dir.clone(), T0 + 5);
    let app = env2.app().await;
    let (s, b, _) = post(&app, "/token", &body, &[("DPoP", proof)]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{b}"
    );
}

#[actix_web::test]
async fn a_client_registered_for_dpop_gets_tokens_only_with_a_proof_rfc9449_s5_2() {
    let env = Env::new();
    let secret = deputy::secret::new_secret();
    let mut c = client("svc", ClientKind::Service, AuthMethod::ClientSecretPost);
    c.secret_hash = Some(
        deputy::secret::hash_secret(&secret, deputy::secret::Argon2Profile::GeneratedSecret)
            .unwrap(),
    );
    c.require_dpop = true;
    env.add_client(c).await;
    let app = env.app().await;
    let (s, body, _) = post(&app, "/token", &cc_auth(&secret), &[]).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );
    let key = ProofKey::new();
    let (s, body, _) = post(
        &app,
        "/token",
        &cc_auth(&secret),
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(
        (s, body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{body}"
    );
}

async fn public_sign_in<S>(env: &Env, app: &S, extra: &str) -> String
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let _ = env;
    sign_in(app, &mut Browser::default(), "web", "alice", extra).await
}

fn redeem_body(code: &str) -> String {
    format!("grant_type=authorization_code&code={code}&client_id=web&code_verifier={VERIFIER}")
}

fn refresh_body(rt: &str) -> String {
    format!("grant_type=refresh_token&client_id=web&refresh_token={rt}")
}

#[actix_web::test]
async fn a_public_clients_refresh_family_is_bound_to_its_key_rfc9449_s5() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let key = ProofKey::new();
    let code = public_sign_in(&env, &app, "").await;
    let (s, tokens, _) = post(
        &app,
        "/token",
        &redeem_body(&code),
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(s, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
    assert_eq!(
        peek(tokens["access_token"].as_str().unwrap()).1["cnf"]["jkt"],
        key.jkt()
    );
    let rt = tokens["refresh_token"].as_str().unwrap().to_string();
    // Without a proof, or with another key: refused, and nothing changes
    // (no rotation, no reuse detection).
    let (s, b, _) = post(&app, "/token", &refresh_body(&rt), &[]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    let other = ProofKey::new();
    let (s, b, _) = post(
        &app,
        "/token",
        &refresh_body(&rt),
        &[("DPoP", other.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM refresh_tokens WHERE consumed_at IS NOT NULL OR revoked_at IS NOT NULL")
            .await,
        0
    );
    // With the key: rotated, the successor bound to the same key.
    let (s, b, _) = post(
        &app,
        "/token",
        &refresh_body(&rt),
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["token_type"], "DPoP");
    let next = b["refresh_token"].as_str().unwrap().to_string();
    let (s, b, _) = post(&app, "/token", &refresh_body(&next), &[]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
}

#[actix_web::test]
async fn a_confidential_clients_refresh_token_is_not_bound_rfc9449_s5() {
    let env = Env::new();
    let secret = env.confidential_app("conf").await;
    env.person("alice").await;
    let app = env.app().await;
    let key = ProofKey::new();
    let code = sign_in(
        &app,
        &mut Browser::default(),
        "conf",
        "alice",
        "&scope=openid+notes%3Aread",
    )
    .await;
    let body = format!(
        "grant_type=authorization_code&code={code}&client_id=conf&client_secret={}&code_verifier={VERIFIER}",
        enc(&secret)
    );
    let (s, tokens, _) = post(
        &app,
        "/token",
        &body,
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(
        (s, tokens["token_type"].as_str()),
        (200, Some("DPoP")),
        "{tokens}"
    );
    let body = format!(
        "grant_type=refresh_token&client_id=conf&client_secret={}&refresh_token={}",
        enc(&secret),
        tokens["refresh_token"].as_str().unwrap()
    );
    let (s, b, _) = post(&app, "/token", &body, &[]).await;
    assert_eq!((s, b["token_type"].as_str()), (200, Some("Bearer")), "{b}");
}

#[actix_web::test]
async fn a_code_bound_with_dpop_jkt_needs_that_key_rfc9449_s10() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let key = ProofKey::new();
    let mut browser = Browser::default();
    let extra = format!("&dpop_jkt={}", key.jkt());
    let code = sign_in(&app, &mut browser, "web", "alice", &extra).await;
    let other = ProofKey::new();
    let (s, b, _) = post(
        &app,
        "/token",
        &redeem_body(&code),
        &[("DPoP", other.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    // A failed presentation spends the code (RFC 6749 §4.1.2).
    let (s, b, _) = post(
        &app,
        "/token",
        &redeem_body(&code),
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    let code = sign_in(&app, &mut browser, "web", "alice", &extra).await;
    let (s, b, _) = post(&app, "/token", &redeem_body(&code), &[]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
    let code = sign_in(&app, &mut browser, "web", "alice", &extra).await;
    let (s, b, _) = post(
        &app,
        "/token",
        &redeem_body(&code),
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!((s, b["token_type"].as_str()), (200, Some("DPoP")), "{b}");
    // A malformed dpop_jkt goes back to the client as invalid_request.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", "&dpop_jkt=short"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        query(&location(&resp), "error").as_deref(),
        Some("invalid_request")
    );
}

async fn userinfo<S>(app: &S, auth: &str, proof: Option<String>) -> Answer
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let mut req = test::TestRequest::get()
        .uri("/userinfo")
        .insert_header(("Authorization", auth));
    if let Some(p) = proof {
        req = req.insert_header(("DPoP", p));
    }
    let resp = test::call_service(app, req.to_request()).await;
    let headers = resp.headers().clone();
    let (s, b) = json_of(resp).await;
    (s, b, headers)
}

const DPOP_INVALID_TOKEN: &str = "DPoP error=\"invalid_token\", algs=\"ES256 RS256 PS256 EdDSA\"";

fn www(h: &actix_web::http::header::HeaderMap) -> String {
    h.get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[actix_web::test]
async fn userinfo_takes_a_bound_token_only_with_its_proof_rfc9449_s7() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let key = ProofKey::new();
    let code = public_sign_in(&env, &app, "").await;
    let (s, tokens, _) = post(
        &app,
        "/token",
        &redeem_body(&code),
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(s, 200, "{tokens}");
    let at = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(peek(&at).1["aud"], ISSUER);
    // As a bearer token: refused, and the challenge names the scheme it
    // needs (RFC 9449 §7.1-§7.2).
    let (s, _, h) = userinfo(&app, &format!("Bearer {at}"), None).await;
    assert_eq!(s, 401);
    assert_eq!(www(&h), DPOP_INVALID_TOKEN);
    // The DPoP scheme without a proof, or a proof without ath, or by another key.
    let (s, _, h) = userinfo(&app, &format!("DPoP {at}"), None).await;
    assert_eq!(s, 401);
    assert!(
        www(&h).starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{}",
        www(&h)
    );
    let (s, _, h) = userinfo(
        &app,
        &format!("DPoP {at}"),
        Some(key.proof("GET", "/userinfo", T0)),
    )
    .await;
    assert_eq!(s, 401);
    assert!(www(&h).contains("invalid_dpop_proof"), "{}", www(&h));
    let other = ProofKey::new();
    let (s, _, h) = userinfo(
        &app,
        &format!("DPoP {at}"),
        Some(other.proof_for("GET", "/userinfo", T0, &at)),
    )
    .await;
    assert_eq!(s, 401);
    assert!(www(&h).contains("invalid_token"), "{}", www(&h));
    // The right proof: the claims; the same proof again: refused.
    let proof = key.proof_for("GET", "/userinfo", T0, &at);
    let (s, b, _) = userinfo(&app, &format!("DPoP {at}"), Some(proof.clone())).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["sub"], "sub-alice");
    let (s, _, h) = userinfo(&app, &format!("DPoP {at}"), Some(proof)).await;
    assert_eq!(s, 401);
    assert!(www(&h).contains("invalid_dpop_proof"), "{}", www(&h));
}

#[actix_web::test]
async fn with_nonces_on_a_proof_needs_the_servers_nonce_rfc9449_s8() {
    let dir = temp_dir();
    let mut settings = settings_in(&dir);
    settings.dpop_nonces = deputy::config::Switch::On;
    let env = Env::with_settings(dir, settings, T0);
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretPost)
        .await;
    let app = env.app().await;
    let key = ProofKey::new();
    let (s, b, h) = post(
        &app,
        "/token",
        &cc_auth(&secret),
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("use_dpop_nonce")),
        "{b}"
    );
    let nonce = h.get("dpop-nonce").unwrap().to_str().unwrap().to_string();
    let with_nonce = key
        .sign(json!({"htm": "POST", "htu": format!("{ISSUER}/token"), "iat": T0, "nonce": nonce}));
    let (s, b, h) = post(&app, "/token", &cc_auth(&secret), &[("DPoP", with_nonce)]).await;
    assert_eq!((s, b["token_type"].as_str()), (200, Some("DPoP")), "{b}");
    assert!(h.get("dpop-nonce").is_some());
    // A nonce from long ago is asked for again.
    env.clock.set(T0 + 3 * deputy::dpop::nonce::NONCE_WINDOW);
    let old = key.sign(json!({"htm": "POST", "htu": format!("{ISSUER}/token"),
        "iat": T0 + 3 * deputy::dpop::nonce::NONCE_WINDOW, "nonce": nonce}));
    let (s, b, _) = post(&app, "/token", &cc_auth(&secret), &[("DPoP", old)]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("use_dpop_nonce")),
        "{b}"
    );
}

const TE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange";
const AT: &str = "urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";

#[actix_web::test]
async fn a_bound_subject_token_is_exchanged_only_with_a_proof() {
    let env = Env::new();
    let secret = deputy::secret::new_secret();
    let mut c = client("svc", ClientKind::Service, AuthMethod::ClientSecretPost);
    c.grant_types = vec![GrantType::ClientCredentials, GrantType::TokenExchange];
    c.secret_hash = Some(
        deputy::secret::hash_secret(&secret, deputy::secret::Argon2Profile::GeneratedSecret)
            .unwrap(),
    );
    env.add_client(c).await;
    for (id, audience, require_dpop) in [
        ("r1", "https://notes.example", false),
        ("r2", "https://strict.example", true),
    ] {
        let rule = DelegationRule {
            id: id.into(),
            actor: "svc".into(),
            audience: audience.into(),
            scopes: vec!["read".into()],
            max_lifetime: 60,
            max_depth: 1,
            broker: None,
            created_at: T0,
            require_dpop,
        };
        env.state
            .store
            .write(move |c| deputy::store::delegation::insert(c, &rule))
            .await
            .unwrap();
    }
    let app = env.app().await;
    let key = ProofKey::new();
    let (s, b, _) = post(
        &app,
        "/token",
        &cc_auth(&secret),
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let bound = b["access_token"].as_str().unwrap().to_string();
    let exchange = |subject: &str, audience: &str| {
        format!(
            "grant_type={TE}&client_id=svc&client_secret={}&subject_token={subject}&subject_token_type={AT}&audience={}",
            enc(&secret),
            enc(audience)
        )
    };
    // As a bearer token: refused.
    let (s, b, _) = post(
        &app,
        "/token",
        &exchange(&bound, "https://notes.example"),
        &[],
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{b}"
    );
    // Issued to this client: only with the key it is bound to.
    let other = ProofKey::new();
    let (s, b, _) = post(
        &app,
        "/token",
        &exchange(&bound, "https://notes.example"),
        &[("DPoP", other.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{b}"
    );
    let (s, b, _) = post(
        &app,
        "/token",
        &exchange(&bound, "https://notes.example"),
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!((s, b["token_type"].as_str()), (200, Some("DPoP")), "{b}");
    assert_eq!(
        peek(b["access_token"].as_str().unwrap()).1["cnf"]["jkt"],
        key.jkt()
    );
    // A rule that requires DPoP: an unbound subject token needs a proof too.
    let (s, b, _) = post(&app, "/token", &cc_auth(&secret), &[]).await;
    assert_eq!(s, 200, "{b}");
    let plain = b["access_token"].as_str().unwrap().to_string();
    let (s, b, _) = post(
        &app,
        "/token",
        &exchange(&plain, "https://notes.example"),
        &[],
    )
    .await;
    assert_eq!((s, b["token_type"].as_str()), (200, Some("Bearer")), "{b}");
    let (s, b, _) = post(
        &app,
        "/token",
        &exchange(&plain, "https://strict.example"),
        &[],
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{b}"
    );
    let (s, b, _) = post(
        &app,
        "/token",
        &exchange(&plain, "https://strict.example"),
        &[("DPoP", other.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!((s, b["token_type"].as_str()), (200, Some("DPoP")), "{b}");
    assert_eq!(
        peek(b["access_token"].as_str().unwrap()).1["cnf"]["jkt"],
        other.jkt()
    );
}

#[actix_web::test]
async fn discovery_advertises_the_proof_algorithms_rfc9449_s5_1() {
    let env = Env::new();
    let app = env.app().await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/.well-known/oauth-authorization-server")
            .to_request(),
    )
    .await;
    let (_, body) = json_of(resp).await;
    assert_eq!(
        body["dpop_signing_alg_values_supported"],
        json!(["ES256", "RS256", "PS256", "EdDSA"])
    );
}

#[actix_web::test]
async fn a_broker_cannot_use_an_agents_bound_tokens_without_the_agents_key() {
    let env = Env::new();
    let mut secrets = std::collections::HashMap::new();
    for (id, grants) in [
        (
            "agent-b",
            vec![GrantType::ClientCredentials, GrantType::TokenExchange],
        ),
        ("broker-m", vec![GrantType::TokenExchange]),
    ] {
        let secret = deputy::secret::new_secret();
        let mut c = client(id, ClientKind::Service, AuthMethod::ClientSecretPost);
        c.grant_types = grants;
        c.secret_hash = Some(
            deputy::secret::hash_secret(&secret, deputy::secret::Argon2Profile::GeneratedSecret)
                .unwrap(),
        );
        env.add_client(c).await;
        secrets.insert(id, secret);
    }
    let rule = DelegationRule {
        id: "r1".into(),
        actor: "agent-b".into(),
        audience: "https://notes.example".into(),
        scopes: vec!["read".into()],
        max_lifetime: 60,
        max_depth: 1,
        broker: Some("broker-m".into()),
        created_at: T0,
        require_dpop: false,
    };
    env.state
        .store
        .write(move |c| deputy::store::delegation::insert(c, &rule))
        .await
        .unwrap();
    let app = env.app().await;
    let kb = ProofKey::new();
    let cc = format!(
        "{CC}&client_id=agent-b&client_secret={}",
        enc(&secrets["agent-b"])
    );
    let mut bound = Vec::new();
    for _ in 0..2 {
        let (s, b, _) = post(
            &app,
            "/token",
            &cc,
            &[("DPoP", kb.proof("POST", "/token", T0))],
        )
        .await;
        assert_eq!(s, 200, "{b}");
        bound.push(b["access_token"].as_str().unwrap().to_string());
    }
    let body = format!(
        "grant_type={TE}&client_id=broker-m&client_secret={}&subject_token={}&subject_token_type={AT}\
         &actor_token={}&actor_token_type={AT}&audience={}",
        enc(&secrets["broker-m"]),
        bound[0],
        bound[1],
        enc("https://notes.example")
    );
    // The broker's own key, or none: the agent's tokens are useless to it.
    let km = ProofKey::new();
    let (s, b, _) = post(
        &app,
        "/token",
        &body,
        &[("DPoP", km.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{b}"
    );
    let (s, b, _) = post(&app, "/token", &body, &[]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{b}"
    );
    // With the agent's key: issued, bound to it, acting as the agent.
    let (s, b, _) = post(
        &app,
        "/token",
        &body,
        &[("DPoP", kb.proof("POST", "/token", T0))],
    )
    .await;
    assert_eq!((s, b["token_type"].as_str()), (200, Some("DPoP")), "{b}");
    let claims = peek(b["access_token"].as_str().unwrap()).1;
    assert_eq!(claims["cnf"]["jkt"], kb.jkt());
    assert_eq!(claims["act"]["sub"], "agent-b");
}

#[actix_web::test]
async fn a_bound_admin_token_works_only_with_its_proof_rfc9449_s7() {
    let env = Env::new();
    let secret = crate::admin::admin_client(&env, "ops").await;
    let app = env.app().await;
    let key = ProofKey::new();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ops:{secret}"))
    );
    let body = format!(
        "grant_type=client_credentials&scope=deputy%3Aadmin&resource={}",
        enc(ISSUER)
    );
    let (s, b, _) = post(
        &app,
        "/token",
        &body,
        &[
            ("Authorization", basic.clone()),
            ("DPoP", key.proof("POST", "/token", T0)),
        ],
    )
    .await;
    assert_eq!((s, b["token_type"].as_str()), (200, Some("DPoP")), "{b}");
    let at = b["access_token"].as_str().unwrap().to_string();
    let jti = peek(&at).1["jti"].as_str().unwrap().to_string();
    let path = format!("/admin/tokens/{jti}");
    let get = |auth: String, proof: Option<String>| {
        let mut r = test::TestRequest::get()
            .uri(&path)
            .insert_header(("Authorization", auth));
        if let Some(p) = proof {
            r = r.insert_header(("DPoP", p));
        }
        r.to_request()
    };
    // As a bearer token: refused (it was a copy without the key), with the
    // DPoP challenge (RFC 9449 §7.1-§7.2).
    let resp = test::call_service(&app, get(format!("Bearer {at}"), None)).await;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(www(resp.headers()), DPOP_INVALID_TOKEN);
    // DPoP without a proof, or with another key's proof: refused.
    let resp = test::call_service(&app, get(format!("DPoP {at}"), None)).await;
    assert_eq!(resp.status().as_u16(), 401);
    assert!(
        www(resp.headers()).contains("invalid_dpop_proof"),
        "{}",
        www(resp.headers())
    );
    let other = ProofKey::new();
    let resp = test::call_service(
        &app,
        get(
            format!("DPoP {at}"),
            Some(other.proof_for("GET", &path, T0, &at)),
        ),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 401);
    // With its proof: the admin API answers, and shows the binding.
    let proof = key.proof_for("GET", &path, T0, &at);
    let resp = test::call_service(&app, get(format!("DPoP {at}"), Some(proof.clone()))).await;
    let (s, b) = json_of(resp).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["token"]["cnf"]["jkt"], key.jkt(), "{b}");
    // The same proof twice: refused.
    let resp = test::call_service(&app, get(format!("DPoP {at}"), Some(proof))).await;
    assert_eq!(resp.status().as_u16(), 401);
}

/// RFC 9449 §8.2 / §9: with nonces required, a successful answer to a
/// request with a proof carries the next nonce — at the token endpoint, at
/// /userinfo and at the admin API alike — so a client never has to fail
/// once to learn it; an answer to a bearer request carries none.
#[actix_web::test]
async fn with_nonces_on_every_successful_dpop_answer_brings_a_nonce_rfc9449_s8_2() {
    let dir = temp_dir();
    let mut settings = settings_in(&dir);
    settings.dpop_nonces = deputy::config::Switch::On;
    let env = Env::with_settings(dir, settings, T0);
    env.app_client("web").await;
    env.person("alice").await;
    let admin_secret = crate::admin::admin_client(&env, "ops").await;
    let app = env.app().await;
    let key = ProofKey::new();
    // The first nonce, from a refusal.
    let (_, _, h) = post(
        &app,
        "/token",
        "grant_type=client_credentials",
        &[("DPoP", key.proof("POST", "/token", T0))],
    )
    .await;
    let nonce = h.get("dpop-nonce").unwrap().to_str().unwrap().to_string();
    let proof = |htm: &str, path: &str, at: Option<&str>| {
        let mut claims = json!({"htm": htm, "htu": format!("{ISSUER}{path}"), "iat": T0,
            "nonce": nonce});
        if let Some(at) = at {
            claims["ath"] = json!(deputy::secret::sha256_b64(at.as_bytes()));
        }
        key.sign(claims)
    };
    // /userinfo: a person's bound token with a proof carrying the nonce.
    let code = public_sign_in(&env, &app, "").await;
    let (s, tokens, h) = post(
        &app,
        "/token",
        &redeem_body(&code),
        &[("DPoP", proof("POST", "/token", None))],
    )
    .await;
    assert_eq!(s, 200, "{tokens}");
    assert!(h.get("dpop-nonce").is_some(), "token endpoint");
    let at = tokens["access_token"].as_str().unwrap().to_string();
    let (s, b, h) = userinfo(
        &app,
        &format!("DPoP {at}"),
        Some(proof("GET", "/userinfo", Some(&at))),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(h.get("dpop-nonce").is_some(), "/userinfo");
    // The admin API: a bound admin token with its proof.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ops:{admin_secret}"))
    );
    let body = format!(
        "grant_type=client_credentials&scope=deputy%3Aadmin&resource={}",
        enc(ISSUER)
    );
    let (s, b, _) = post(
        &app,
        "/token",
        &body,
        &[
            ("Authorization", basic.clone()),
            ("DPoP", proof("POST", "/token", None)),
        ],
    )
    .await;
    assert_eq!((s, b["token_type"].as_str()), (200, Some("DPoP")), "{b}");
    let admin_at = b["access_token"].as_str().unwrap().to_string();
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/admin/tokens")
            .insert_header(("Authorization", format!("DPoP {admin_at}")))
            .insert_header(("DPoP", proof("GET", "/admin/tokens", Some(&admin_at))))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("dpop-nonce").is_some(), "admin API");
    // A bearer answer carries no nonce.
    let (s, b, _) = post(
        &app,
        "/token",
        "grant_type=client_credentials",
        &[("Authorization", basic)],
    )
    .await;
    let bearer = b["access_token"].as_str().unwrap().to_string();
    assert_eq!(s, 200, "{b}");
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/admin/tokens")
            .insert_header(("Authorization", format!("Bearer {bearer}")))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("dpop-nonce").is_none());
}
