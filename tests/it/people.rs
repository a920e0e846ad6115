//! Helpers for the person flow: a client, a person, and a scripted browser.

use actix_web::test;
use base64::Engine;
use deputy::model::{AuthMethod, ClientKind, GrantType};
use deputy::secret::{hash_secret, Argon2Profile};
use serde_json::Value;

use crate::support::*;

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const REDIRECT: &str = "https://app.example/cb";
pub const PASSWORD: &str = "correct horse battery";

impl Env {
    /// A public frontend app registered for code + refresh.
    pub async fn app_client(&self, id: &str) {
        let mut c = client(id, ClientKind::App, AuthMethod::None);
        c.grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
        c.redirect_uris = vec![REDIRECT.to_string()];
        c.post_logout_redirect_uris = vec!["https://app.example/bye".to_string()];
        c.scopes = vec!["notes:read".into(), "notes:write".into()];
        c.audiences = vec!["https://api.example".into()];
        self.add_client(c).await;
    }

    /// A confidential app (client_secret_post); returns its secret.
    #[allow(dead_code)]
    pub async fn confidential_app(&self, id: &str) -> String {
        let secret = deputy::secret::new_secret();
        let mut c = client(id, ClientKind::App, AuthMethod::ClientSecretPost);
        c.grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
        c.redirect_uris = vec![REDIRECT.to_string()];
        c.scopes = vec!["notes:read".into()];
        c.secret_hash = Some(hash_secret(&secret, Argon2Profile::GeneratedSecret).unwrap());
        self.add_client(c).await;
        secret
    }

    pub async fn person(&self, username: &str) -> String {
        let u = deputy::store::users::User {
            id: format!("sub-{username}"),
            username: username.to_string(),
            email: Some(format!("{username}@example.com")),
            name: Some(format!("{username} Example")),
            password_hash: hash_secret(PASSWORD, Argon2Profile::Password).unwrap(),
            disabled_at: None,
            created_at: T0,
            email_verified: false,
        };
        let id = u.id.clone();
        self.state
            .store
            .write(move |c| deputy::store::users::insert(c, &u))
            .await
            .unwrap();
        id
    }
}

/// A minimal cookie jar.
#[derive(Default, Clone)]
pub struct Browser {
    pub cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn absorb(&mut self, resp: &actix_web::dev::ServiceResponse) {
        for c in resp.response().cookies() {
            self.cookies.retain(|(n, _)| n != c.name());
            if !c.value().is_empty() {
                self.cookies
                    .push((c.name().to_string(), c.value().to_string()));
            }
        }
    }
    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

pub fn location(resp: &actix_web::dev::ServiceResponse) -> url::Url {
    url::Url::parse(resp.headers().get("location").unwrap().to_str().unwrap()).unwrap()
}

pub fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string())
}

pub fn authorize_query(client_id: &str, extra: &str) -> String {
    // A caller may choose the scope by putting `&scope=` in `extra`.
    let scope = if extra.contains("&scope=") {
        ""
    } else {
        "&scope=openid+profile+email+notes%3Aread"
    };
    format!(
        "/authorize?client_id={client_id}&response_type=code{scope}\
         &state=st-1&nonce=n-1&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}"
    )
}

pub async fn body_text(resp: actix_web::dev::ServiceResponse) -> String {
    String::from_utf8(test::read_body(resp).await.to_vec()).unwrap()
}

/// Start an authorization and log in: returns the consent page's HTML.
pub async fn login_to_consent<S>(app: &S, browser: &mut Browser, client_id: &str) -> String
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let resp = test::call_service(
        app,
        test::TestRequest::get()
            .uri(&authorize_query(client_id, ""))
            .to_request(),
    )
    .await;
    browser.absorb(&resp);
    let html = body_text(resp).await;
    let resp = test::call_service(
        app,
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
    assert_eq!(resp.status().as_u16(), 200, "the consent page");
    browser.absorb(&resp);
    body_text(resp).await
}

/// Answer the consent page `html` with `decision` (allow or deny).
pub async fn post_consent<S>(
    app: &S,
    browser: &Browser,
    html: &str,
    decision: &str,
) -> actix_web::dev::ServiceResponse
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    test::call_service(
        app,
        form_post(
            "/consent",
            &format!(
                "interaction={}&csrf={}&decision={decision}",
                hidden(html, "interaction"),
                hidden(html, "csrf")
            ),
        )
        .insert_header(("Cookie", browser.header()))
        .to_request(),
    )
    .await
}

/// Run authorize -> login -> consent and return the code.
pub async fn sign_in<S>(
    app: &S,
    browser: &mut Browser,
    client_id: &str,
    username: &str,
    extra: &str,
) -> String
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let resp = test::call_service(
        app,
        test::TestRequest::get()
            .uri(&authorize_query(client_id, extra))
            .insert_header(("Cookie", browser.header()))
            .to_request(),
    )
    .await;
    if resp.status().as_u16() == 303 {
        return query(&location(&resp), "code").expect("code in redirect");
    }
    assert_eq!(resp.status().as_u16(), 200);
    browser.absorb(&resp);
    let html = body_text(resp).await;
    let (interaction, csrf) = (hidden(&html, "interaction"), hidden(&html, "csrf"));
    let mut resp = test::call_service(
        app,
        form_post(
            "/login",
            &format!(
                "interaction={interaction}&csrf={csrf}&username={username}&password={}",
                enc(PASSWORD)
            ),
        )
        .insert_header(("Cookie", browser.header()))
        .to_request(),
    )
    .await;
    browser.absorb(&resp);
    if resp.status().as_u16() == 200 {
        let html = body_text(resp).await;
        assert!(html.contains("wants access"), "{html}");
        resp = post_consent(app, browser, &html, "allow").await;
    }
    assert_eq!(resp.status().as_u16(), 303);
    let loc = location(&resp);
    assert_eq!(query(&loc, "state").as_deref(), Some("st-1"));
    assert_eq!(query(&loc, "iss").as_deref(), Some(ISSUER));
    query(&loc, "code").expect("code")
}

pub async fn redeem<S>(app: &S, client_id: &str, code: &str, extra: &str) -> (u16, Value)
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let body = format!(
        "grant_type=authorization_code&code={code}&client_id={client_id}&code_verifier={VERIFIER}{extra}"
    );
    json_of(test::call_service(app, form_post("/token", &body).to_request()).await).await
}

#[allow(dead_code)]
pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}
