//! RS256 ID tokens for the clients that register them (OIDC Core §15.1: an
//! OP must be able to sign RS256; §3.1.3.7 step 7: the RP validates with the
//! algorithm it registered). Signatures are checked here with OpenSSL
//! directly against the key published in /jwks, not with deputy's verifier.

use actix_web::test;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use deputy::model::{AuthMethod, ClientKind, GrantType, IdTokenAlg};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use serde_json::{json, Value};

use crate::people::*;
use crate::support::*;

impl Env {
    /// A public app client like `app_client`, its ID tokens signed with `alg`.
    async fn app_client_with(&self, id: &str, alg: IdTokenAlg) {
        let mut c = client(id, ClientKind::App, AuthMethod::None);
        c.grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
        c.redirect_uris = vec![REDIRECT.to_string()];
        c.post_logout_redirect_uris = vec!["https://app.example/bye".to_string()];
        c.scopes = vec!["notes:read".into()];
        c.id_token_alg = alg;
        self.add_client(c).await;
    }
}

async fn jwks<S>(app: &S) -> Vec<Value>
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let resp = test::call_service(app, test::TestRequest::get().uri("/jwks").to_request()).await;
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200);
    body["keys"].as_array().unwrap().clone()
}

/// RFC 7518 §3.3 (RSASSA-PKCS1-v1_5 with SHA-256) with the published `n`, `e`.
fn rs256_verifies(jwk: &Value, jwt: &str) -> bool {
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    let rsa = Rsa::from_public_components(
        BigNum::from_slice(&n).unwrap(),
        BigNum::from_slice(&e).unwrap(),
    )
    .unwrap();
    let key = PKey::from_rsa(rsa).unwrap();
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let mut v = Verifier::new(MessageDigest::sha256(), &key).unwrap();
    v.update(input.as_bytes()).unwrap();
    v.verify(&sig).unwrap_or(false)
}

fn key_named<'a>(keys: &'a [Value], kid: &Value) -> &'a Value {
    keys.iter()
        .find(|k| &k["kid"] == kid)
        .unwrap_or_else(|| panic!("{kid} not in the JWKS"))
}

#[actix_web::test]
async fn an_rs256_client_gets_id_tokens_that_verify_with_the_published_rsa_key() {
    let env = Env::new();
    env.app_client_with("rp", IdTokenAlg::Rs256).await;
    env.app_client_with("web", IdTokenAlg::Es256).await;
    env.person("alice").await;
    let app = env.app().await;
    let keys = jwks(&app).await;

    let mut browser = Browser::default();
    let code = sign_in(&app, &mut browser, "rp", "alice", "").await;
    let (status, tokens) = redeem(&app, "rp", &code, "").await;
    assert_eq!(status, 200, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap();
    let (h, claims) = peek(id_token);
    assert_eq!(h["alg"], "RS256");
    assert_eq!(h["typ"], "JWT");
    let rsa = key_named(&keys, &h["kid"]);
    assert_eq!(rsa["kty"], "RSA");
    assert_eq!(rsa["alg"], "RS256");
    assert_eq!(rsa["use"], "sig");
    assert!(rs256_verifies(rsa, id_token), "RS256 signature");
    // A changed payload does not verify: the check above can fail.
    let mut parts: Vec<String> = id_token.split('.').map(str::to_string).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory"}"#);
    assert!(!rs256_verifies(rsa, &parts.join(".")));
    assert_eq!(claims["aud"], "rp");
    assert_eq!(claims["iss"], ISSUER);
    // §3.1.3.6: at_hash with RS256's hash (SHA-256).
    assert_eq!(
        claims["at_hash"],
        deputy::token::id_token::at_hash(tokens["access_token"].as_str().unwrap())
    );

    // Its access token stays ES256 with the P-256 key.
    let (ah, _) = peek(tokens["access_token"].as_str().unwrap());
    assert_eq!(ah["alg"], "ES256");
    assert_eq!(key_named(&keys, &ah["kid"])["kty"], "EC");

    // A refresh brings a new ID token, RS256 again.
    let body = format!(
        "grant_type=refresh_token&client_id=rp&refresh_token={}",
        tokens["refresh_token"].as_str().unwrap()
    );
    let (status, refreshed) =
        json_of(test::call_service(&app, form_post("/token", &body).to_request()).await).await;
    assert_eq!(status, 200, "{refreshed}");
    let again = refreshed["id_token"].as_str().unwrap();
    assert_eq!(peek(again).0["alg"], "RS256");
    assert!(rs256_verifies(rsa, again));
    let (rah, _) = peek(refreshed["access_token"].as_str().unwrap());
    assert_eq!(rah["alg"], "ES256");

    // An ES256 client still gets ES256 ID tokens.
    let mut other = Browser::default();
    let code = sign_in(&app, &mut other, "web", "alice", "").await;
    let (_, web) = redeem(&app, "web", &code, "").await;
    let (wh, _) = peek(web["id_token"].as_str().unwrap());
    assert_eq!(wh["alg"], "ES256");
    assert_eq!(key_named(&keys, &wh["kid"])["kty"], "EC");

    // The RS256 ID token is an id_token_hint at logout (RP-Initiated Logout §2).
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&format!(
                "/logout?id_token_hint={id_token}&post_logout_redirect_uri=https%3A%2F%2Fapp.example%2Fbye&state=s"
            ))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(location(&resp).as_str(), "https://app.example/bye?state=s");
}

#[actix_web::test]
async fn rs256_is_never_accepted_where_an_access_token_is_expected() {
    let env = Env::new();
    let app = env.app().await;
    // An access token's claims, signed RS256 with deputy's own RSA key: the
    // key verifies ID tokens only (RFC 8725 §3.1).
    let ring = env.state.keys.ring();
    let rsa = ring.rsa_signing_key(T0).unwrap();
    let claims = json!({
        "iss": ISSUER, "sub": "sub-alice", "aud": ISSUER, "client_id": "web",
        "exp": T0 + 300, "iat": T0, "jti": "forged-jti", "scope": "openid",
    });
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": rsa.meta.kid});
    let token = deputy::token::jws::encode(&header, &claims, rsa.signer.as_ref()).unwrap();
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/userinfo")
            .insert_header(("Authorization", format!("Bearer {token}")))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 401);
    let challenge = resp.headers().get("www-authenticate").unwrap();
    assert!(challenge.to_str().unwrap().contains("invalid_token"));
}

#[actix_web::test]
async fn rotation_creates_both_keys_and_the_rsa_key_signs_with_its_generation() {
    // On the wall clock: the command below runs on it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let env = Env::in_dir(temp_dir(), now);
    env.app_client_with("rp", IdTokenAlg::Rs256).await;
    env.person("alice").await;
    let app = env.app().await;
    let first = env
        .state
        .keys
        .ring()
        .rsa_signing_key(now)
        .unwrap()
        .meta
        .kid
        .clone();

    // `deputy keys rotate`, as an operator runs it.
    let out = env.cli().args(["keys", "rotate"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (ec_kid, rsa_kid) = (&rotated["kid"], &rotated["rsa_kid"]);
    assert!(rsa_kid.is_string() && rsa_kid != ec_kid, "{rotated}");
    assert!(env.state.keys.reload_if_changed().unwrap());
    let keys = jwks(&app).await;
    assert_eq!(keys.len(), 4, "two generations, published at once");
    assert_eq!(key_named(&keys, ec_kid)["kty"], "EC");
    assert_eq!(key_named(&keys, rsa_kid)["kty"], "RSA");
    let list = env.cli().args(["keys", "list"]).output().unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let state = |kid: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|k| &k["kid"] == kid)
            .map(|k| k["state"].clone())
    };
    assert_eq!(state(rsa_kid), Some(json!("pending")));
    assert_eq!(state(&json!(first)), Some(json!("active")));

    // Pending: the old generation's RSA key signs; once the new generation
    // is active, its RSA key does.
    let mut browser = Browser::default();
    let code = sign_in(&app, &mut browser, "rp", "alice", "").await;
    let (_, tokens) = redeem(&app, "rp", &code, "").await;
    assert_eq!(peek(tokens["id_token"].as_str().unwrap()).0["kid"], first);
    let activates_at = rotated["activates_at"].as_i64().unwrap();
    env.clock.set(activates_at);
    let mut browser = Browser::default();
    let code = sign_in(&app, &mut browser, "rp", "alice", "").await;
    let (_, tokens) = redeem(&app, "rp", &code, "").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(&peek(id_token).0["kid"], rsa_kid);
    assert!(rs256_verifies(key_named(&keys, rsa_kid), id_token));
    assert_eq!(
        &peek(tokens["access_token"].as_str().unwrap()).0["kid"],
        ec_kid
    );
}

#[actix_web::test]
async fn a_deployment_with_only_ec_keys_gets_an_rsa_key_at_its_next_start() {
    let env = Env::new();
    let ec = env
        .state
        .keys
        .ring()
        .signing_key(T0)
        .unwrap()
        .meta
        .kid
        .clone();
    // As before RSA keys: remove the RSA key from the store.
    let settings = env.state.settings.clone();
    if settings.postgres_url().is_none() {
        for entry in std::fs::read_dir(&settings.keys_dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if path.extension().is_some_and(|e| e == "json") && text.contains("RS256") {
                std::fs::remove_file(path.with_extension("pem")).unwrap();
                std::fs::remove_file(&path).unwrap();
            }
        }
    } else {
        env.state
            .store
            .write(|c| c.execute("DELETE FROM signing_keys WHERE alg = 'RS256'", &[]))
            .await
            .unwrap();
    }
    let dir = env.dir.clone();
    drop(env);
    let env = Env::in_dir(dir, T0 + 10);
    let ring = env.state.keys.ring();
    assert_eq!(ring.signing_key(T0 + 10).unwrap().meta.kid, ec, "kid kept");
    let rsa = ring.rsa_signing_key(T0 + 10).unwrap();
    assert_eq!(rsa.meta.ec_kid.as_deref(), Some(ec.as_str()));
    let app = env.app().await;
    assert_eq!(jwks(&app).await.len(), 2);
}

/// Several instances starting at once on an empty PostgreSQL database make
/// exactly one key generation: one P-256 key and its one RSA key.
#[core::prelude::v1::test]
fn instances_starting_at_once_create_one_generation() {
    if !Env::on_postgres() {
        return;
    }
    let dir = temp_dir();
    let settings = settings_in(&dir);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let settings = settings.clone();
            std::thread::spawn(move || {
                let store = deputy::store::Store::open(&settings.database, 2).unwrap();
                let deputy::store::Store::Postgres(pg) = store else {
                    panic!("not PostgreSQL")
                };
                let kek = deputy::app::key_encryption_key(&settings).unwrap();
                let keys = deputy::keys::Keys::open_source(
                    deputy::keys::KeySource::Database { store: pg, kek },
                    T0,
                )
                .unwrap();
                let ring = keys.ring();
                (
                    ring.signing_key(T0).unwrap().meta.kid.clone(),
                    ring.rsa_signing_key(T0).unwrap().meta.kid.clone(),
                )
            })
        })
        .collect();
    let seen: std::collections::BTreeSet<(String, String)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(seen.len(), 1, "every instance signs with the same keys");
    let env = Env::in_dir(dir, T0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&env.state.keys.ring().jwks_text(T0, 330))
            .unwrap()["keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
