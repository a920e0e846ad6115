//! What /authorize does with awkward parameters: OIDC scopes deputy does not
//! implement (OIDC Core §5.4, §11) and loopback ports out of range (RFC 8252
//! §7.3).

use actix_web::test;
use deputy::model::{AuthMethod, ClientKind, GrantType};

use crate::people::*;
use crate::support::*;

async fn get(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
    uri: &str,
) -> actix_web::dev::ServiceResponse {
    test::call_service(app, test::TestRequest::get().uri(uri).to_request()).await
}

fn assert_page(resp: &actix_web::dev::ServiceResponse, what: &str) {
    assert_eq!(resp.status().as_u16(), 400, "{what}");
    assert!(resp.headers().get("location").is_none(), "{what}");
    assert!(
        resp.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{what}"
    );
}

#[actix_web::test]
async fn unimplemented_oidc_scopes_are_ignored_oidc_core_s5_4() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let code = sign_in(
        &app,
        &mut Browser::default(),
        "web",
        "alice",
        "&scope=openid+offline_access+phone+address+notes%3Aread",
    )
    .await;
    let (status, body) = redeem(&app, "web", &code, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid notes:read");
    let (_, at) = peek(body["access_token"].as_str().unwrap());
    assert_eq!(at["scope"], "openid notes:read");
    // Other unknown scopes are still refused (RFC 6749 §3.3), and nothing left is no scope.
    for scope in ["openid+admin", "offline_access", "phone+address"] {
        let resp = get(&app, &authorize_query("web", &format!("&scope={scope}"))).await;
        assert_eq!(resp.status().as_u16(), 303, "{scope}");
        assert_eq!(
            query(&location(&resp), "error").as_deref(),
            Some("invalid_scope"),
            "{scope}"
        );
    }
}

#[actix_web::test]
async fn loopback_port_out_of_range_is_an_unregistered_redirect_rfc8252_s7_3() {
    let env = Env::new();
    let mut c = client("cli", ClientKind::App, AuthMethod::None);
    c.grant_types = vec![GrantType::AuthorizationCode];
    c.redirect_uris = vec!["http://127.0.0.1/cb".to_string()];
    c.scopes = vec!["notes:read".into()];
    env.add_client(c).await;
    env.person("alice").await;
    let app = env.app().await;
    for port in ["65536", "99999", "00080", "0", ""] {
        let uri = authorize_query(
            "cli",
            &format!(
                "&redirect_uri={}",
                enc(&format!("http://127.0.0.1:{port}/cb"))
            ),
        );
        assert_page(&get(&app, &uri).await, port);
    }
    // Control: an ordinary port gets the login page and the code arrives there.
    let code = sign_in(
        &app,
        &mut Browser::default(),
        "cli",
        "alice",
        "&redirect_uri=http%3A%2F%2F127.0.0.1%3A65535%2Fcb",
    )
    .await;
    assert!(!code.is_empty());
}
