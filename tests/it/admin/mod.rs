//! The admin API (`/admin`), the admin CLI and the cascade, with the
//! fixtures they share.

mod auth;
mod cli;
mod families;
mod revoke;
mod views;

use actix_web::test;
use deputy::clock::Clock;
use deputy::model::{AuthMethod, ClientKind, GrantType, SubjectKind};
use deputy::secret::{hash_secret, Argon2Profile};
use deputy::store::tokens::{GrantRecord, TokenRecord};
use serde_json::{json, Value};

use crate::support::*;
use crate::token_status::{token_for, App};

/// A service that may get `deputy:admin` tokens for deputy itself (and,
/// for the refusal tests, `read` tokens and tokens for another audience).
pub async fn admin_client(env: &Env, id: &str) -> String {
    let secret = deputy::secret::new_secret();
    let mut c = client(id, ClientKind::Service, AuthMethod::ClientSecretBasic);
    c.scopes = vec!["deputy:admin".into(), "read".into()];
    c.audiences = vec![ISSUER.into(), "https://api.example".into()];
    c.secret_hash = Some(hash_secret(&secret, Argon2Profile::GeneratedSecret).unwrap());
    env.add_client(c).await;
    secret
}

/// An admin token: client_credentials, scope deputy:admin, audience = issuer.
pub async fn admin_token(app: &impl App, env: &Env) -> String {
    let secret = admin_client(env, "admin").await;
    token_for(
        app,
        "admin",
        &secret,
        &format!("&scope=deputy%3Aadmin&resource={}", enc(ISSUER)),
    )
    .await
}

pub async fn get(app: &impl App, path: &str, token: &str) -> (u16, Value) {
    let req = test::TestRequest::get()
        .uri(path)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .to_request();
    json_of(test::call_service(app, req).await).await
}

pub async fn post_revoke(app: &impl App, token: &str, body: Value) -> (u16, Value) {
    let req = test::TestRequest::post()
        .uri("/admin/revoke")
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body.to_string())
        .to_request();
    json_of(test::call_service(app, req).await).await
}

/// A token record to insert directly: a person's access token for
/// `https://api.example`, issued at T0 for an hour.
pub fn rec(jti: &str, client_id: &str, parent: Option<&str>, act: Option<Value>) -> TokenRecord {
    TokenRecord {
        jti: jti.into(),
        kind: deputy::model::TokenKind::Access,
        subject: "person-1".into(),
        subject_kind: SubjectKind::Person,
        client_id: client_id.into(),
        client_kind: if act.is_some() { "agent" } else { "app" }.into(),
        actor_chain: act.map(|a| a.to_string()),
        audience: "https://api.example".into(),
        scope: "read".into(),
        task: None,
        issued_at: T0,
        expires_at: T0 + 3600,
        parent_jti: parent.map(str::to_string),
        grant_id: None,
        grant_type: GrantType::TokenExchange.as_str().into(),
        rule_id: None,
        may_act: None,
        actor_token_jti: None,
        revoked_at: None,
        revoked_reason: None,
        cnf_jkt: None,
    }
}

pub async fn insert(env: &Env, records: Vec<TokenRecord>) {
    env.state
        .store
        .write(move |c| {
            for r in &records {
                deputy::store::tokens::insert(c, r)?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

pub async fn insert_grant(env: &Env, g: GrantRecord) {
    env.state
        .store
        .write(move |c| deputy::store::tokens::insert_grant(c, &g))
        .await
        .unwrap();
}

/// The issue's three-level chain: `root` (person-1 via app1, grant g-1),
/// `child` acting as agent-a, `grandchild` acting as agent-b for agent-a.
pub fn chain() -> Vec<TokenRecord> {
    let mut root = rec("root", "app1", None, None);
    root.grant_id = Some("g-1".into());
    root.grant_type = GrantType::AuthorizationCode.as_str().into();
    let mut child = rec(
        "child",
        "agent-a",
        Some("root"),
        Some(json!({"sub": "agent-a"})),
    );
    child.task = Some("book a flight".into());
    child.rule_id = Some("rule-7".into());
    child.issued_at = T0 + 1;
    let mut grandchild = rec(
        "grandchild",
        "agent-b",
        Some("child"),
        Some(json!({"sub": "agent-b", "act": {"sub": "agent-a"}})),
    );
    grandchild.task = Some("book a flight".into());
    grandchild.issued_at = T0 + 2;
    vec![root, child, grandchild]
}

pub fn grant_g1() -> GrantRecord {
    GrantRecord {
        id: "g-1".into(),
        grant_type: "authorization_code".into(),
        subject: "person-1".into(),
        client_id: "app1".into(),
        scope: "openid read".into(),
        auth_time: Some(T0 - 60),
        created_at: T0 - 30,
    }
}

/// `revoked_at` of a token record, straight from the store.
pub async fn revoked_at(env: &Env, jti: &str) -> Option<i64> {
    env.token_record(jti).await.revoked_at
}

/// Mint a real access token (JWT and record) for `client_id`, so it can be
/// introspected; stored with the given lineage.
pub async fn mint(env: &Env, client_id: &str, parent: Option<&str>, act: Option<Value>) -> String {
    let c = client(client_id, ClientKind::Agent, AuthMethod::None);
    let minted = deputy::token::mint_access_token(
        &env.state.keys.ring(),
        ISSUER,
        env.clock.now(),
        &c,
        deputy::token::AccessTokenSpec {
            subject: "person-1".into(),
            subject_kind: SubjectKind::Person,
            audience: "https://api.example".into(),
            scope: vec!["read".into()],
            expires_at: env.clock.now() + 300,
            auth_time: None,
            act,
            task: None,
            parent_jti: parent.map(str::to_string),
            grant_id: None,
            grant_type: GrantType::TokenExchange,
            rule_id: None,
            may_act: None,
            actor_token_jti: None,
            cnf_jkt: None,
        },
    )
    .unwrap();
    insert(env, vec![minted.record.clone()]).await;
    minted.jwt
}

/// The `admin_revoke` events, oldest first.
pub async fn admin_events(env: &Env) -> Vec<deputy::audit::AuditEvent> {
    env.state
        .store
        .read(|c| {
            deputy::store::audit::query(
                c,
                &deputy::store::audit::AuditQuery {
                    event: Some("admin_revoke".into()),
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap()
}
