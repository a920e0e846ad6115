//! OAuth 2.0 Form Post Response Mode: the answer of /authorize as a form the
//! browser POSTs to the redirect URI, codes and errors alike.

use actix_web::test;

use crate::people::*;
use crate::support::*;

fn header(resp: &actix_web::dev::ServiceResponse, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Checks the page is a form_post answer to REDIRECT and returns its HTML.
async fn form_post_page(resp: actix_web::dev::ServiceResponse) -> String {
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("location").is_none());
    assert_eq!(header(&resp, "cache-control"), "no-store");
    let csp = header(&resp, "content-security-policy");
    assert!(
        csp.contains("form-action https://app.example;"),
        "the form may go only to the redirect URI's origin: {csp}"
    );
    // Exactly the page's one script, by its hash (CSP 3 §8.3).
    let digest = openssl::sha::sha256(b"document.forms[0].submit();");
    let expected = format!(
        "script-src 'sha256-{}'",
        base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, digest)
    );
    assert!(csp.split("; ").any(|d| d == expected), "{csp}");
    let html = body_text(resp).await;
    assert!(
        html.contains(&format!("<form method=\"post\" action=\"{REDIRECT}\">")),
        "{html}"
    );
    assert!(html.contains("<script>document.forms[0].submit();</script>"));
    assert_eq!(hidden(&html, "iss"), ISSUER);
    html
}

#[actix_web::test]
async fn a_code_travels_in_a_self_submitting_form_and_redeems() {
    let env = Env::new();
    env.app_client("web").await;
    env.person("alice").await;
    let app = env.app().await;
    let mut browser = Browser::default();
    // Through the login and consent pages: the mode survives the interaction.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", "&response_mode=form_post"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    browser.absorb(&resp);
    let html = body_text(resp).await;
    let resp = test::call_service(
        &app,
        form_post(
            "/login",
            &format!(
                "interaction={}&csrf={}&username=alice&password={}",
                hidden(&html, "interaction"),
                hidden(&html, "csrf"),
                enc(PASSWORD)
            ),
        )
        .insert_header(("Cookie", browser.header()))
        .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    browser.absorb(&resp);
    let consent = body_text(resp).await;
    assert!(consent.contains("wants access"), "{consent}");
    let html = form_post_page(post_consent(&app, &browser, &consent, "allow").await).await;
    assert_eq!(hidden(&html, "state"), "st-1");
    let code = hidden(&html, "code");
    let (status, body) = redeem(&app, "web", &code, "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id_token"].is_string());

    // With a live session and remembered consent: the form at once.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(&authorize_query("web", "&response_mode=form_post"))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    let html = form_post_page(resp).await;
    let (status, body) = redeem(&app, "web", &hidden(&html, "code"), "").await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn errors_travel_the_way_the_client_asked() {
    let env = Env::new();
    env.app_client("web").await;
    let app = env.app().await;
    for (extra, error) in [
        ("&response_mode=form_post&prompt=none", "login_required"),
        (
            "&response_mode=form_post&scope=openid+admin",
            "invalid_scope",
        ),
        (
            "&response_mode=form_post&code_challenge_method=plain",
            "invalid_request",
        ),
    ] {
        let resp = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&authorize_query("web", extra))
                .to_request(),
        )
        .await;
        let html = form_post_page(resp).await;
        assert_eq!(hidden(&html, "error"), error, "{extra}");
        assert_eq!(hidden(&html, "state"), "st-1");
        assert!(!html.contains("name=\"code\""));
    }
    // A mode deputy does not serve, or one sent twice, is refused in the
    // query (Multiple Response Types §2.1): the client's choice is unknown.
    for extra in [
        "&response_mode=fragment",
        "&response_mode=form_post&response_mode=form_post",
    ] {
        let resp = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&authorize_query("web", extra))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 303, "{extra}");
        assert_eq!(
            query(&location(&resp), "error").as_deref(),
            Some("invalid_request")
        );
    }
}

#[actix_web::test]
async fn fields_are_escaped_in_the_page() {
    let env = Env::new();
    env.app_client("web").await;
    let app = env.app().await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri(
                &authorize_query("web", "&response_mode=form_post&prompt=none").replace(
                    "state=st-1",
                    "state=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                ),
            )
            .to_request(),
    )
    .await;
    let html = form_post_page(resp).await;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains(
            "name=\"state\" value=\"&#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;\""
        ),
        "{html}"
    );
}
