//! Validation of an authorization request (RFC 6749 §4.1.1, OIDC Core
//! §3.1.2.1, RFC 7636 §4.3, RFC 8707 §2). Pure: the caller supplies the client.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, OAuthError};
use crate::model::GrantType;
use crate::policy::{parse_scope, pkce, redirect, requested_audience};
use crate::store::clients::Client;
use crate::token::person_claims::ClaimsRequest;

/// Scopes every client may ask a person for (OIDC Core §5.4).
pub const OIDC_SCOPES: &[&str] = &["openid", "profile", "email"];

/// OIDC-defined scopes deputy does not implement. OIDC Core §3.1.2.1, §5.4
/// and §11: values the OP does not understand SHOULD be ignored, so these
/// are dropped; other unknown scopes stay `invalid_scope` (RFC 6749 §3.3).
pub const IGNORED_OIDC_SCOPES: &[&str] = &["offline_access", "phone", "address"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// How the answer travels back to the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseMode {
    /// In the redirect URI's query (RFC 6749 §4.1.2, the default for `code`).
    #[default]
    Query,
    /// In an auto-submitted form POSTed to the redirect URI (OAuth 2.0 Form
    /// Post Response Mode §2): the code never appears in a URL.
    FormPost,
}

impl ResponseMode {
    /// `None` for a value deputy does not serve (`fragment`, JARM, ...).
    fn parse(v: Option<&str>) -> Option<Self> {
        match v {
            None | Some("query") => Some(Self::Query),
            Some("form_post") => Some(Self::FormPost),
            Some(_) => None,
        }
    }
}

/// A checked authorization request, kept while the person logs in and consents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// RFC 6749 §4.1.3: if sent here, the token request must repeat it.
    pub redirect_uri_sent: bool,
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    /// The audience the access token will carry.
    pub resource: String,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// Requests kept from before form_post existed read as `query`.
    #[serde(default)]
    pub response_mode: ResponseMode,
    /// The `claims` parameter (OIDC Core §5.5); requests kept from before
    /// it was served read as empty.
    #[serde(default)]
    pub claims: ClaimsRequest,
    /// RFC 9449 §10: the thumbprint of the DPoP key the code is bound to.
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

impl AuthorizationRequest {
    pub fn wants_openid(&self) -> bool {
        self.scope.iter().any(|s| s == "openid")
    }
}

/// Why a request fails, and where the answer goes.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: never redirect
    /// (RFC 6749 §4.1.2.1); show an error page.
    Page(&'static str),
    /// Everything else goes back to the client (RFC 6749 §4.1.2.1, RFC 9207).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        response_mode: ResponseMode,
        error: Box<OAuthError>,
    },
}

fn parse_prompt(v: Option<&str>) -> Result<Prompt, OAuthError> {
    let mut p = Prompt::default();
    let Some(v) = v else {
        return Ok(p);
    };
    for t in v.split(' ').filter(|t| !t.is_empty()) {
        match t {
            "none" => p.none = true,
            "login" => p.login = true,
            "consent" => p.consent = true,
            _ => return Err(OAuthError::invalid_request("unsupported prompt value")),
        }
    }
    // OIDC Core §3.1.2.1: `none` with any other value is an error.
    if p.none && (p.login || p.consent) {
        return Err(OAuthError::invalid_request(
            "prompt=none cannot be combined",
        ));
    }
    Ok(p)
}

/// The parameters of an authorization request as the HTTP layer read them
/// (query string or form body), keeping which names were sent more than once.
pub trait AuthorizeParams {
    fn get(&self, name: &str) -> Option<&str>;
    fn contains(&self, name: &str) -> bool;
    /// Names sent more than once (RFC 6749 §3.1: none may be).
    fn repeated(&self) -> &[String];
}

/// Validate an authorization request for `client` (None when unknown).
pub fn validate(
    client: Option<&Client>,
    params: &impl AuthorizeParams,
    default_resource: &str,
) -> Result<AuthorizationRequest, AuthorizeError> {
    // RFC 6749 §4.1.2.1: until client_id and redirect_uri are each known
    // good, nothing may be sent to the redirect URI.
    let repeated = params.repeated();
    if repeated
        .iter()
        .any(|k| k == "client_id" || k == "redirect_uri")
    {
        return Err(AuthorizeError::Page(
            "The request repeats client_id or redirect_uri.",
        ));
    }
    if params.get("client_id").is_none() {
        return Err(AuthorizeError::Page("The request has no client_id."));
    }
    let client = client.ok_or(AuthorizeError::Page("The application is not known."))?;
    let redirect_uri = redirect::select(&client.redirect_uris, params.get("redirect_uri")).ok_or(
        AuthorizeError::Page(
            "The redirect URI does not match one registered for this application.",
        ),
    )?;
    let state = params.get("state").map(str::to_string);
    // Known before any other check, so that every later refusal travels the
    // way the client asked (Form Post Response Mode §2); an unknown or
    // repeated mode is itself refused in the query.
    let requested_mode = if repeated.iter().any(|k| k == "response_mode") {
        None
    } else {
        ResponseMode::parse(params.get("response_mode"))
    };
    let response_mode = requested_mode.unwrap_or_default();
    let to_client = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        response_mode,
        error: Box::new(error),
    };
    // RFC 6749 §3.1: no parameter more than once; now the client hears of it.
    // A repeated state is not echoed (it was not sent exactly once).
    if repeated.iter().any(|k| k != "resource") {
        return Err(to_client(OAuthError::invalid_request("repeated parameter")));
    }
    if !repeated.is_empty() {
        // RFC 8707 §2: the server may refuse several resources; deputy does.
        return Err(to_client(OAuthError::invalid_target(
            "only one resource per request",
        )));
    }
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(to_client(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            )))
        }
        None => {
            return Err(to_client(OAuthError::invalid_request(
                "missing parameter: response_type",
            )))
        }
    }
    if !client.may_use(GrantType::AuthorizationCode) {
        return Err(to_client(OAuthError::unauthorized_client(
            "the client is not registered for the authorization code grant",
        )));
    }
    // OAuth 2.0 Multiple Response Types §2.1 and Form Post Response Mode §2:
    // `query` and `form_post` are served; `fragment` would put the code
    // where scripts and history can read it.
    if requested_mode.is_none() {
        return Err(to_client(OAuthError::invalid_request(
            "response_mode must be query or form_post",
        )));
    }
    // OIDC Core §6.1 and §6.2: request objects are not supported, and say so.
    if params.contains("request") {
        return Err(to_client(OAuthError::new(
            ErrorCode::RequestNotSupported,
            "the request parameter is not supported",
        )));
    }
    if params.contains("request_uri") {
        return Err(to_client(OAuthError::new(
            ErrorCode::RequestUriNotSupported,
            "the request_uri parameter is not supported",
        )));
    }
    // RFC 7636 §4.4.1 and RFC 9700 §2.1.1: PKCE with S256 for every client.
    let code_challenge = pkce::check_challenge(
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    )
    .map_err(to_client)?;
    let mut scope = parse_scope(params.get("scope").unwrap_or("")).map_err(to_client)?;
    // Unless the client registered the name as one of its own scopes.
    scope.retain(|s| !IGNORED_OIDC_SCOPES.contains(&s.as_str()) || client.scopes.contains(s));
    if scope.is_empty() {
        return Err(to_client(OAuthError::invalid_scope("scope is required")));
    }
    for s in &scope {
        if !OIDC_SCOPES.contains(&s.as_str()) && !client.scopes.contains(s) {
            return Err(to_client(OAuthError::invalid_scope(
                "requested scope is not allowed for this client",
            )));
        }
    }
    let resource = match requested_audience(params.get("resource"), None).map_err(to_client)? {
        Some(r) if client.audiences.contains(&r) => r,
        Some(_) => {
            return Err(to_client(OAuthError::invalid_target(
                "the client may not obtain tokens for this resource",
            )))
        }
        None => default_resource.to_string(),
    };
    let prompt = parse_prompt(params.get("prompt")).map_err(to_client)?;
    let max_age = match params.get("max_age") {
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            to_client(OAuthError::invalid_request(
                "max_age must be a non-negative integer",
            ))
        })?),
        None => None,
    };
    let nonce = params.get("nonce").map(str::to_string);
    if nonce.as_ref().is_some_and(|n| n.len() > 512)
        || state.as_ref().is_some_and(|s| s.len() > 1024)
    {
        return Err(to_client(OAuthError::invalid_request(
            "state or nonce too long",
        )));
    }
    let claims = match params.get("claims") {
        Some(raw) => ClaimsRequest::parse(raw).map_err(to_client)?,
        None => ClaimsRequest::default(),
    };
    // RFC 9449 §10: a JWK SHA-256 thumbprint (RFC 7638), base64url.
    let dpop_jkt = params.get("dpop_jkt").map(str::to_string);
    if dpop_jkt.as_ref().is_some_and(|j| {
        j.len() != 43
            || !j
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        return Err(to_client(OAuthError::invalid_request(
            "dpop_jkt must be a JWK SHA-256 thumbprint",
        )));
    }
    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        redirect_uri_sent: params.contains("redirect_uri"),
        scope,
        state: state.clone(),
        nonce,
        code_challenge,
        resource,
        prompt,
        max_age,
        login_hint: params
            .get("login_hint")
            .map(|h| h.chars().take(128).collect()),
        response_mode,
        claims,
        dpop_jkt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::form::parse_form;
    use crate::model::{AuthMethod, ClientKind};

    fn client() -> Client {
        Client {
            id: "app".into(),
            kind: ClientKind::App,
            name: "App".into(),
            auth_method: AuthMethod::None,
            secret_hash: None,
            jwks: None,
            jwks_uri: None,
            assertion_alg: "ES256".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec!["notes:read".into()],
            audiences: vec!["https://api.example".into()],
            created_at: 0,
            id_token_claims: false,
            id_token_alg: Default::default(),
            require_dpop: false,
            origin: Default::default(),
        }
    }

    const GOOD: &str = "client_id=app&response_type=code&scope=openid+notes%3Aread&state=s1\
        &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";

    fn run(q: &str) -> Result<AuthorizationRequest, AuthorizeError> {
        validate(
            Some(&client()),
            &parse_form(q.as_bytes()).unwrap(),
            "https://issuer.example",
        )
    }

    fn redirect_error(q: &str) -> &'static str {
        match run(q) {
            Err(AuthorizeError::Redirect { error, .. }) => error.code.as_str(),
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    #[test]
    fn good_request_defaults() {
        let r = run(GOOD).unwrap();
        assert_eq!(r.redirect_uri, "https://app.example/cb");
        assert!(!r.redirect_uri_sent);
        assert_eq!(r.resource, "https://issuer.example");
        assert!(r.wants_openid());
    }

    #[test]
    fn untrusted_client_or_redirect_never_redirects() {
        assert!(matches!(
            validate(None, &parse_form(GOOD.as_bytes()).unwrap(), "x"),
            Err(AuthorizeError::Page(_))
        ));
        assert!(matches!(
            run(&format!(
                "{GOOD}&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"
            )),
            Err(AuthorizeError::Page(_))
        ));
    }

    fn run_keeping_repeats(q: &str) -> Result<AuthorizationRequest, AuthorizeError> {
        validate(
            Some(&client()),
            &crate::http::form::parse_form_keeping_repeats(q.as_bytes()).unwrap(),
            "https://issuer.example",
        )
    }

    #[test]
    fn repeats_redirect_once_client_and_redirect_uri_are_trusted() {
        for q in [
            format!("{GOOD}&client_id=app"),
            format!("{GOOD}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"),
        ] {
            assert!(matches!(run_keeping_repeats(&q), Err(AuthorizeError::Page(_))), "{q}");
        }
        let code = |q: &str| match run_keeping_repeats(q) {
            Err(AuthorizeError::Redirect { error, state, .. }) => (error.code.as_str(), state),
            other => panic!("expected a redirect error, got {other:?}"),
        };
        assert_eq!(
            code(&format!("{GOOD}&nonce=a&nonce=b")),
            ("invalid_request", Some("s1".into()))
        );
        assert_eq!(code(&format!("{GOOD}&state=s2")), ("invalid_request", None));
        let r = "resource=https%3A%2F%2Fapi.example";
        assert_eq!(
            code(&format!("{GOOD}&{r}&{r}")),
            ("invalid_target", Some("s1".into()))
        );
    }

    #[test]
    fn unimplemented_oidc_scopes_are_dropped() {
        let r = run(&GOOD.replace(
            "scope=openid+notes%3Aread",
            "scope=offline_access+openid+phone+notes%3Aread+address",
        ))
        .unwrap();
        assert_eq!(r.scope, ["openid", "notes:read"]);
        assert_eq!(
            redirect_error(&GOOD.replace("scope=openid+notes%3Aread", "scope=offline_access")),
            "invalid_scope"
        );
    }

    #[test]
    fn errors_redirect_with_codes() {
        assert_eq!(
            redirect_error(&GOOD.replace("response_type=code", "response_type=token")),
            "unsupported_response_type"
        );
        assert_eq!(
            redirect_error(&GOOD.replace("S256", "plain")),
            "invalid_request"
        );
        assert_eq!(
            redirect_error(&GOOD.replace("&code_challenge_method=S256", "")),
            "invalid_request"
        );
        assert_eq!(
            redirect_error(&GOOD.replace("scope=openid+notes%3Aread", "scope=openid+admin")),
            "invalid_scope"
        );
        assert_eq!(
            redirect_error(&format!("{GOOD}&resource=https%3A%2F%2Fevil.example")),
            "invalid_target"
        );
        assert_eq!(
            redirect_error(&format!("{GOOD}&prompt=none+login")),
            "invalid_request"
        );
        assert_eq!(
            redirect_error(&format!("{GOOD}&max_age=-1")),
            "invalid_request"
        );
    }
}
