//! What /authorize does with awkward parameters: repeats (RFC 6749 §3.1,
//! §4.1.2.1), OIDC scopes deputy does not implement (OIDC Core §5.4, §11) and
//! loopback ports out of range (RFC 8252 §7.3).

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
async fn a_repeated_parameter_goes_back_to_a_trusted_client_rfc6749_s4_1_2_1() {
    let env = Env::new();
    env.app_client("web").await;
    let app = env.app().await;
    let base = authorize_query("web", "");
    for (extra, error) in [
        ("&scope=openid", "invalid_request"),
        ("&nonce=n-2", "invalid_request"),
        ("&response_type=code", "invalid_request"),
        ("&code_challenge_method=S256", "invalid_request"),
        // RFC 8707 §2: one resource per request here.
        (
            "&resource=https%3A%2F%2Fapi.example&resource=https%3A%2F%2Fapi.example",
            "invalid_target",
        ),
    ] {
        let resp = get(&app, &format!("{base}{extra}")).await;
        assert_eq!(resp.status().as_u16(), 303, "{extra}");
        let loc = location(&resp);
        assert!(loc.as_str().starts_with(REDIRECT), "{extra}");
        assert_eq!(query(&loc, "error").as_deref(), Some(error), "{extra}");
        assert_eq!(query(&loc, "state").as_deref(), Some("st-1"), "{extra}");
        assert_eq!(query(&loc, "iss").as_deref(), Some(ISSUER), "{extra}");
        assert!(query(&loc, "code").is_none());
    }
    // A repeated state is not sent back (it was not sent exactly once).
    let resp = get(&app, &format!("{base}&state=st-2")).await;
    assert_eq!(resp.status().as_u16(), 303);
    let loc = location(&resp);
    assert_eq!(query(&loc, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query(&loc, "state"), None);
    assert_eq!(query(&loc, "iss").as_deref(), Some(ISSUER));
    // The same through POST.
    let body = format!("{}&nonce=n-2", base.trim_start_matches("/authorize?"));
    let resp = test::call_service(&app, form_post("/authorize", &body).to_request()).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        query(&location(&resp), "error").as_deref(),
        Some("invalid_request")
    );
}

#[actix_web::test]
async fn a_repeated_client_id_or_redirect_uri_is_a_page_rfc6749_s4_1_2_1() {
    let env = Env::new();
    env.app_client("web").await;
    let app = env.app().await;
    let base = authorize_query("web", "");
    let cb = enc(REDIRECT);
    for extra in [
        "&client_id=web".to_string(),
        format!("&redirect_uri={cb}&redirect_uri={cb}"),
        format!("&redirect_uri={cb}&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"),
    ] {
        assert_page(&get(&app, &format!("{base}{extra}")).await, &extra);
    }
    // An unknown client with a repeated parameter: still a page.
    let resp = get(
        &app,
        &format!("{}&scope=openid", authorize_query("nobody", "")),
    )
    .await;
    assert_page(&resp, "unknown client");
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
