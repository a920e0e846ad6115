//! Shared fixtures: a fresh database, keys dir and manual clock per test.

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{test, web};
use deputy::app::AppState;
use deputy::clock::ManualClock;
use deputy::config::Settings;
use deputy::model::{AuthMethod, ClientKind, GrantType};
use deputy::secret::{hash_secret, Argon2Profile};
use deputy::store::clients::Client;
use josekit::jwk::alg::ec::EcKeyPair;
use josekit::jws::ES256;
use serde_json::{json, Value};

pub const ISSUER: &str = "http://deputy.test";
pub const T0: i64 = 1_900_000_000;

#[allow(dead_code)]
pub struct Env {
    pub dir: PathBuf,
    pub clock: Arc<ManualClock>,
    pub state: web::Data<AppState>,
}

pub fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("deputy-it-{}", deputy::secret::random_token(9)));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Settings for a deputy in `dir`: a SQLite file there, or, when
/// `DEPUTY_TEST_POSTGRES` names a PostgreSQL database, a schema of its own
/// in that database (the same one again for the same `dir`, so a restart
/// finds its data) with a key-encryption key file in `dir`.
pub fn settings_in(dir: &std::path::Path) -> Settings {
    // RSA-3072 keys take up to a second each: this process generates a few
    // and every test deputy reuses them (each its own P-256 keys).
    deputy::keys::rsa::reuse_generated_keys();
    let mut s = Settings {
        issuer: ISSUER.to_string(),
        database: dir.join("deputy.db"),
        keys_dir: dir.join("keys"),
        ..Settings::default()
    };
    if let Ok(url) = std::env::var("DEPUTY_TEST_POSTGRES") {
        let digest = deputy::secret::sha256(dir.to_string_lossy().as_bytes());
        let schema: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let schema_url =
            deputy::store::postgres::create_schema(&url, &format!("it_{schema}")).unwrap();
        s.database = schema_url.into();
        let kek = dir.join("kek");
        if !kek.exists() {
            use base64::Engine;
            let key = deputy::secret::random_bytes::<32>();
            std::fs::write(&kek, base64::engine::general_purpose::STANDARD.encode(key)).unwrap();
        }
        s.key_encryption_key_file = kek;
    }
    s
}

impl Env {
    /// A new key generation (P-256 and RSA), where this deputy keeps its
    /// keys (the directory, or the database sealed under the key-encryption key).
    pub async fn rotate_key(&self, now: i64, activates_at: i64) -> deputy::keys::Generation {
        let settings = self.state.settings.clone();
        if settings.postgres_url().is_none() {
            return deputy::keys::file::generate(&settings.keys_dir, now, activates_at).unwrap();
        }
        let kek = deputy::app::key_encryption_key(&settings).unwrap();
        self.state
            .store
            .write(move |c| deputy::keys::db::insert_new(c, &kek, now, activates_at))
            .await
            .unwrap()
    }

    /// Another process holds the write lock for `how_long` (longer than the
    /// store waits for a lock: 5 s), starting before this returns. SQLite:
    /// an IMMEDIATE transaction on another connection; PostgreSQL: the
    /// tables writes go to, locked against writers (reads go on).
    pub fn hold_write_lock(&self, how_long: std::time::Duration) -> std::thread::JoinHandle<()> {
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let holder = match &self.state.store {
            deputy::store::Store::Sqlite(_) => {
                let path = self.state.settings.database.clone();
                std::thread::spawn(move || {
                    let conn = rusqlite::Connection::open(path).unwrap();
                    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                    locked_tx.send(()).unwrap();
                    std::thread::sleep(how_long);
                    conn.execute_batch("ROLLBACK").unwrap();
                })
            }
            deputy::store::Store::Postgres(pg) => {
                let pg = pg.clone();
                std::thread::spawn(move || {
                    pg.transact_blocking(|db| {
                        db.batch(
                            "LOCK TABLE used_assertions, tokens, audit_events, grants \
                             IN EXCLUSIVE MODE",
                        )?;
                        let _ = locked_tx.send(());
                        std::thread::sleep(how_long);
                        Ok(Err::<(), ()>(()))
                    })
                    .unwrap()
                    .unwrap_err();
                })
            }
        };
        locked_rx.recv().unwrap();
        holder
    }

    /// True when this run's tests go to PostgreSQL (`DEPUTY_TEST_POSTGRES`).
    pub fn on_postgres() -> bool {
        std::env::var_os("DEPUTY_TEST_POSTGRES").is_some()
    }

    /// The `deputy` binary, pointed at this deputy's database and keys.
    pub fn cli(&self) -> std::process::Command {
        let settings = &self.state.settings;
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_deputy"));
        c.env_clear()
            .arg("--database")
            .arg(&settings.database)
            .arg("--keys-dir")
            .arg(&settings.keys_dir);
        if !settings.key_encryption_key_file.as_os_str().is_empty() {
            c.env(
                "DEPUTY_KEY_ENCRYPTION_KEY_FILE",
                &settings.key_encryption_key_file,
            );
        }
        c
    }

    /// The stored record of an issued token (panics when there is none).
    pub async fn token_record(&self, jti: &str) -> deputy::store::tokens::TokenRecord {
        let jti = jti.to_string();
        self.state
            .store
            .read(move |c| deputy::store::tokens::get(c, &jti))
            .await
            .unwrap()
            .unwrap()
    }

    pub fn new() -> Env {
        Self::in_dir(temp_dir(), T0)
    }

    /// Open (or re-open, after a "restart") the app on a directory.
    pub fn in_dir(dir: PathBuf, now: i64) -> Env {
        Self::with_settings(dir.clone(), settings_in(&dir), now)
    }

    pub fn with_settings(dir: PathBuf, settings: Settings, now: i64) -> Env {
        let clock = Arc::new(ManualClock::new(now));
        let state = web::Data::new(AppState::open(settings, clock.clone()).unwrap());
        Env { dir, clock, state }
    }

    pub async fn app(
        &self,
    ) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>
    {
        test::init_service(deputy::http::app(self.state.clone())).await
    }

    pub async fn add_client(&self, client: Client) {
        self.state
            .store
            .write(move |c| deputy::store::clients::insert(c, &client))
            .await
            .unwrap();
    }

    /// A service with a client secret; returns the secret.
    pub async fn secret_service(&self, id: &str, method: AuthMethod) -> String {
        let secret = deputy::secret::new_secret();
        let mut c = client(id, ClientKind::Service, method);
        c.secret_hash = Some(hash_secret(&secret, Argon2Profile::GeneratedSecret).unwrap());
        self.add_client(c).await;
        secret
    }

    /// A private_key_jwt service; returns its key pair.
    pub async fn jwt_service(&self, id: &str) -> EcKeyPair {
        let kp = ES256.generate_key_pair().unwrap();
        let mut jwk = kp.to_jwk_public_key();
        jwk.set_key_id("k1");
        let mut c = client(id, ClientKind::Service, AuthMethod::PrivateKeyJwt);
        c.jwks = Some(json!({"keys": [serde_json::to_value(jwk.as_ref()).unwrap()]}).to_string());
        self.add_client(c).await;
        kp
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        self.count_with(sql, Vec::new()).await
    }

    /// `count` with text parameters (?1, ?2, ...).
    pub async fn count_with(&self, sql: &'static str, args: Vec<String>) -> i64 {
        self.state
            .store
            .read(move |c| {
                let args: Vec<deputy::store::Value> = args.into_iter().map(Into::into).collect();
                c.scalar(sql, &args)
            })
            .await
            .unwrap()
    }
}

pub fn client(id: &str, kind: ClientKind, auth: AuthMethod) -> Client {
    Client {
        id: id.to_string(),
        kind,
        name: id.to_string(),
        auth_method: auth,
        secret_hash: None,
        jwks: None,
        jwks_uri: None,
        assertion_alg: "ES256".to_string(),
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec!["read".into(), "write".into()],
        audiences: vec!["https://api.example".into(), "https://other.example".into()],
        created_at: T0,
        id_token_claims: false,
        id_token_alg: Default::default(),
        require_dpop: false,
        origin: Default::default(),
    }
}

/// Sign a client assertion with the given claims (and header extras).
pub fn assertion(kp: &EcKeyPair, claims: Value, header_extra: Value) -> String {
    let mut header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
    if let (Some(h), Some(extra)) = (header.as_object_mut(), header_extra.as_object()) {
        for (k, v) in extra {
            h.insert(k.clone(), v.clone());
        }
    }
    let signer = ES256.signer_from_der(kp.to_der_private_key()).unwrap();
    deputy::token::jws::encode(&header, &claims, &signer).unwrap()
}

pub fn std_claims(client_id: &str, now: i64, jti: &str) -> Value {
    json!({
        "iss": client_id, "sub": client_id, "aud": format!("{ISSUER}/token"),
        "exp": now + 60, "iat": now, "jti": jti,
    })
}

pub fn form_post(path: &str, body: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri(path)
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload(body.to_string())
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub async fn json_of(resp: ServiceResponse) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = test::read_body(resp).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Decode a JWT's header and payload without verifying (tests only).
pub fn peek(jwt: &str) -> (Value, Value) {
    use base64::Engine;
    let parts: Vec<&str> = jwt.split('.').collect();
    let d = |p: &str| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    (d(parts[0]), d(parts[1]))
}
