//! Introspection (RFC 7662, RFC 9701) and revocation (RFC 7009), with the
//! fixtures they share.

mod introspection;
mod jwt_response;
mod revocation;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use base64::Engine;
use deputy::clock::Clock;
use deputy::model::{AuthMethod, ClientKind, GrantType, SubjectKind};
use deputy::store::tokens::TokenRecord;
use serde_json::{json, Value};

use crate::support::*;

pub trait App:
    Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>
{
}
impl<T> App for T where
    T: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>
{
}

pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// A real access token from `/token` (client credentials, HTTP Basic).
pub async fn token_for(app: &impl App, id: &str, secret: &str, extra: &str) -> String {
    let req = form_post("/token", &format!("grant_type=client_credentials{extra}"))
        .insert_header(("Authorization", basic(id, secret)))
        .to_request();
    let (status, body) = json_of(test::call_service(app, req).await).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

pub async fn introspect(app: &impl App, id: &str, secret: &str, body: &str) -> (u16, Value) {
    let req = form_post("/introspect", body)
        .insert_header(("Authorization", basic(id, secret)))
        .to_request();
    json_of(test::call_service(app, req).await).await
}

pub fn jti_of(jwt: &str) -> String {
    peek(jwt).1["jti"].as_str().unwrap().to_string()
}

pub async fn record(env: &Env, jti: &str) -> TokenRecord {
    env.token_record(jti).await
}

/// Mint and record an access token directly, for cases `/token` cannot make
/// yet (public clients, derived tokens, delegation).
pub async fn mint(env: &Env, client_id: &str, kind: ClientKind, parent: Option<&str>) -> String {
    let c = client(client_id, kind, AuthMethod::None);
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
            act: Some(json!({"sub": client_id})),
            task: Some("book a flight".into()),
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
    let rec = minted.record.clone();
    env.state
        .store
        .write(move |c| deputy::store::tokens::insert(c, &rec))
        .await
        .unwrap();
    minted.jwt
}
