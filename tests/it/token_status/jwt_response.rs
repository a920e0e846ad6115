//! The JWT introspection response (RFC 9701) and the discovery metadata of
//! both endpoints (RFC 8414 §2).

use actix_web::test;
use deputy::model::AuthMethod;
use josekit::jws::ES256;
use serde_json::json;

use super::{basic, jti_of, token_for};
use crate::support::*;

#[actix_web::test]
async fn the_jwt_response_is_signed_with_a_published_key() {
    let env = Env::new();
    let secret = env
        .secret_service("svc", AuthMethod::ClientSecretBasic)
        .await;
    let app = env.app().await;
    let at = token_for(&app, "svc", &secret, "").await;
    env.clock.advance(10);
    let ask = |token: String| {
        form_post("/introspect", &format!("token={token}"))
            .insert_header(("Authorization", basic("svc", &secret)))
            .insert_header(("Accept", "application/token-introspection+jwt"))
            .to_request()
    };
    let resp = test::call_service(&app, ask(at.clone())).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/token-introspection+jwt"
    );
    assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
    let jwt = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    let (header, claims) = peek(&jwt);
    assert_eq!(header["typ"], "token-introspection+jwt");
    assert_eq!(header["alg"], "ES256");
    // Verify with the key the JWKS publishes under the header's kid.
    let jwks =
        json_of(test::call_service(&app, test::TestRequest::get().uri("/jwks").to_request()).await)
            .await
            .1;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap();
    let jwk = josekit::jwk::Jwk::from_bytes(serde_json::to_vec(jwk).unwrap()).unwrap();
    let verifier = ES256.verifier_from_jwk(&jwk).unwrap();
    deputy::token::jws::decode_unverified(&jwt)
        .unwrap()
        .verify_with(&verifier)
        .unwrap();
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], "svc");
    assert_eq!(claims["iat"], T0 + 10);
    assert!(claims.get("sub").is_none() && claims.get("exp").is_none());
    let ti = &claims["token_introspection"];
    assert_eq!(ti["active"], true);
    assert_eq!(ti["jti"], jti_of(&at));
    assert_eq!(ti["client_id"], "svc");
    // An inactive token is `{"active": false}` inside the JWT too.
    let resp = test::call_service(&app, ask("garbage".into())).await;
    let jwt = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert_eq!(
        peek(&jwt).1["token_introspection"],
        json!({"active": false})
    );
}

#[actix_web::test]
async fn discovery_advertises_introspection_and_revocation() {
    let env = Env::new();
    let app = env.app().await;
    let (status, m) = json_of(
        test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/.well-known/oauth-authorization-server")
                .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(m["introspection_endpoint"], format!("{ISSUER}/introspect"));
    assert_eq!(m["revocation_endpoint"], format!("{ISSUER}/revoke"));
    assert_eq!(
        m["introspection_endpoint_auth_methods_supported"],
        json!([
            "private_key_jwt",
            "client_secret_basic",
            "client_secret_post"
        ])
    );
    assert_eq!(
        m["revocation_endpoint_auth_methods_supported"],
        json!([
            "private_key_jwt",
            "client_secret_basic",
            "client_secret_post",
            "none"
        ])
    );
    let algs = &m["token_endpoint_auth_signing_alg_values_supported"];
    assert_eq!(
        &m["introspection_endpoint_auth_signing_alg_values_supported"],
        algs
    );
    assert_eq!(
        &m["revocation_endpoint_auth_signing_alg_values_supported"],
        algs
    );
    assert_eq!(
        m["introspection_signing_alg_values_supported"],
        json!(["ES256"])
    );
}
