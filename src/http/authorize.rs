//! `GET`/`POST /authorize` (RFC 6749 §4.1.1, OIDC Core §3.1.2). Requests whose
//! client or redirect URI cannot be trusted get an error page; every other
//! answer is a 303 to the client carrying `iss` (RFC 9207) and `state`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::error::OAuthError;
use crate::grant::authorization_code::request::{validate, AuthorizationRequest, AuthorizeError};
use crate::grant::authorization_code::{issue_code, SignedIn};
use crate::http::form::{parse_form_keeping_repeats, FormKeepingRepeats, FormParams};
use crate::http::pages::{self, ConsentPage, LoginPage};
use crate::login::{self, CurrentSession};
use crate::model::ClientKind;
use crate::secret::{random_token, sha256_b64};
use crate::store::sessions::Interaction;

/// How long a person has to log in and consent.
const INTERACTION_TTL: i64 = 600;

pub async fn authorize_get(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match parse_form_keeping_repeats(req.query_string().as_bytes()) {
        Ok(params) => handle(&state, &req, params).await,
        Err(_) => bad_request_page(),
    }
}

pub async fn authorize_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Result<FormKeepingRepeats, OAuthError>,
) -> HttpResponse {
    match form {
        Ok(FormKeepingRepeats(params)) => handle(&state, &req, params).await,
        Err(e) => pages::form_error(&e, bad_request_page()),
    }
}

fn bad_request_page() -> HttpResponse {
    pages::error(
        StatusCode::BAD_REQUEST,
        "Invalid request",
        "The sign-in request is malformed (a parameter is badly encoded).",
    )
}

pub fn server_error_page() -> HttpResponse {
    pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Please try again later.",
    )
}

/// 303 to the client with the given parameters plus `iss` and `state`.
pub fn redirect_to_client(
    issuer: &str,
    redirect_uri: &str,
    state: Option<&str>,
    params: &[(&str, &str)],
) -> HttpResponse {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return server_error_page();
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        // RFC 9207 §2: identify ourselves to defend against mix-up attacks.
        q.append_pair("iss", issuer);
    }
    pages::with_html_headers(HttpResponse::SeeOther())
        .insert_header(("Location", url.to_string()))
        .finish()
}

pub fn redirect_error(
    issuer: &str,
    req: &AuthorizationRequest,
    error: &OAuthError,
) -> HttpResponse {
    redirect_to_client(
        issuer,
        &req.redirect_uri,
        req.state.as_deref(),
        &[
            ("error", error.code.as_str()),
            (
                "error_description",
                &crate::error::sanitize_description(&error.description),
            ),
        ],
    )
}

async fn handle(state: &AppState, req: &HttpRequest, params: FormParams) -> HttpResponse {
    let client = match params.get("client_id") {
        Some(id) if id.len() <= 256 => {
            let id = id.to_string();
            match state
                .store
                .read(move |c| crate::store::clients::get(c, &id))
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "client lookup failed");
                    return server_error_page();
                }
            }
        }
        _ => None,
    };
    let areq = match validate(client.as_ref(), &params, &state.settings.issuer) {
        Ok(r) => r,
        Err(AuthorizeError::Page(message)) => {
            return pages::error(StatusCode::BAD_REQUEST, "Cannot continue", message)
        }
        Err(AuthorizeError::Redirect {
            redirect_uri,
            state: st,
            error,
        }) => {
            return redirect_to_client(
                &state.settings.issuer,
                &redirect_uri,
                st.as_deref(),
                &[
                    ("error", error.code.as_str()),
                    (
                        "error_description",
                        &crate::error::sanitize_description(&error.description),
                    ),
                ],
            )
        }
    };
    // OIDC Core §3.1.2.1: the hint must be an ID token deputy issued
    // (signature and issuer; it may have expired).
    let hint_sub = match params.get("id_token_hint") {
        None => None,
        Some(t) => match state.own_tokens.id_token_hint(state.clock.now(), t) {
            Ok(h) => h.str_claim("sub").map(str::to_string),
            Err(_) => {
                let e = OAuthError::invalid_request("id_token_hint is not valid");
                return redirect_error(&state.settings.issuer, &areq, &e);
            }
        },
    };
    match proceed(state, req, areq, hint_sub.as_deref()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "authorization failed");
            server_error_page()
        }
    }
}

/// Decide what the person must still do: log in, consent, or nothing.
async fn proceed(
    state: &AppState,
    req: &HttpRequest,
    areq: AuthorizationRequest,
    hint_sub: Option<&str>,
) -> Result<HttpResponse, OAuthError> {
    let now = state.clock.now();
    let issuer = &state.settings.issuer;
    let session = login::current(state, req).await?;
    // OIDC Core §3.1.2.1: prompt=login and an exceeded max_age force a new login.
    // max_age=0 asks for a fresh login every time (seconds are whole here).
    let too_old = |s: &CurrentSession| {
        areq.max_age
            .is_some_and(|m| m == 0 || now - s.session.auth_time > m)
    };
    // OIDC Core §3.1.2.1: a hint naming another person than the signed-in
    // one needs that person's login (login_required with prompt=none).
    let other_person = |s: &CurrentSession| hint_sub.is_some_and(|h| h != s.user.id);
    let need_login = match &session {
        None => true,
        Some(s) => areq.prompt.login || too_old(s) || other_person(s),
    };
    if need_login && areq.prompt.none {
        return Ok(redirect_error(
            issuer,
            &areq,
            &OAuthError::new(
                crate::error::ErrorCode::LoginRequired,
                "the person is not signed in",
            ),
        ));
    }
    if let (false, Some(s)) = (need_login, &session) {
        let consented = has_consent(state, &s.user.id, &areq).await?;
        if consented && !areq.prompt.consent {
            return complete(state, &areq, s).await;
        }
        if areq.prompt.none {
            return Ok(redirect_error(
                issuer,
                &areq,
                &OAuthError::new(
                    crate::error::ErrorCode::ConsentRequired,
                    "consent is required",
                ),
            ));
        }
    }
    // Start an interaction bound to this browser. Each one is a row: the
    // same per-address limit as login posts keeps a flood from filling the store.
    if !state.login_by_address.allow(&login::address(req), now) {
        return Ok(pages::too_many_requests());
    }
    let (browser, new_browser) = login::browser_id(req);
    let interaction = Interaction {
        id: random_token(24),
        browser_hash: sha256_b64(browser.as_bytes()),
        csrf: random_token(24),
        request: serde_json::to_string(&areq).map_err(OAuthError::server_error)?,
        login_done: !need_login,
        expires_at: now + INTERACTION_TTL,
    };
    let stored = interaction.clone();
    state
        .store
        .write(move |c| crate::store::sessions::insert_interaction(c, &stored, now))
        .await?;
    let mut resp = if need_login {
        render_login(state, &areq, &interaction, None, StatusCode::OK).await?
    } else {
        match &session {
            Some(s) => render_consent(state, &areq, &interaction, s).await?,
            None => return Err(OAuthError::server_error("no session for consent")),
        }
    };
    if new_browser {
        let _ = resp.add_cookie(&login::browser_cookie(&state.settings, browser));
    }
    Ok(resp)
}

async fn client_of(
    state: &AppState,
    id: &str,
) -> Result<crate::store::clients::Client, OAuthError> {
    let id = id.to_string();
    state
        .store
        .read(move |c| crate::store::clients::get(c, &id))
        .await?
        .ok_or_else(|| OAuthError::server_error("client of a pending interaction vanished"))
}

pub async fn render_login(
    state: &AppState,
    areq: &AuthorizationRequest,
    i: &Interaction,
    error: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, OAuthError> {
    let client = client_of(state, &areq.client_id).await?;
    Ok(pages::page(
        status,
        &LoginPage {
            client_name: &client.name,
            interaction: &i.id,
            csrf: &i.csrf,
            login_hint: areq.login_hint.as_deref().unwrap_or(""),
            error,
        },
    ))
}

/// Plain words for each scope: OIDC scopes here, API scopes from `resource add`.
async fn describe_scopes(
    state: &AppState,
    areq: &AuthorizationRequest,
) -> Result<Vec<(String, String)>, OAuthError> {
    let resource = areq.resource.clone();
    let defined = state
        .store
        .read(move |c| crate::store::resources::scope_descriptions(c, &resource))
        .await?;
    Ok(areq
        .scope
        .iter()
        .map(|s| {
            let words = match s.as_str() {
                "openid" => "Confirm who you are (your account identifier)".to_string(),
                "profile" => "See your name and username".to_string(),
                "email" => "See your email address".to_string(),
                other => defined
                    .iter()
                    .find(|(n, _)| n == other)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_else(|| format!("Use the permission \u{201c}{other}\u{201d}")),
            };
            (s.clone(), words)
        })
        .collect())
}

pub async fn render_consent(
    state: &AppState,
    areq: &AuthorizationRequest,
    i: &Interaction,
    s: &CurrentSession,
) -> Result<HttpResponse, OAuthError> {
    let client = client_of(state, &areq.client_id).await?;
    let scopes = describe_scopes(state, areq).await?;
    Ok(pages::page(
        StatusCode::OK,
        &ConsentPage {
            client_name: &client.name,
            username: &s.user.username,
            is_agent: client.kind == ClientKind::Agent,
            resource: (areq.resource != state.settings.issuer).then_some(areq.resource.as_str()),
            scopes,
            interaction: &i.id,
            csrf: &i.csrf,
        },
    ))
}

pub async fn has_consent(
    state: &AppState,
    user_id: &str,
    areq: &AuthorizationRequest,
) -> Result<bool, OAuthError> {
    let (u, c, r, s) = (
        user_id.to_string(),
        areq.client_id.clone(),
        areq.resource.clone(),
        areq.scope.clone(),
    );
    Ok(state
        .store
        .read(move |conn| crate::store::consents::covers(conn, &u, &c, &r, &s))
        .await?)
}

/// Issue the code and send the person back to the client.
pub async fn complete(
    state: &AppState,
    areq: &AuthorizationRequest,
    s: &CurrentSession,
) -> Result<HttpResponse, OAuthError> {
    // A refusal decided at issuance (signed out, consent withdrawn meanwhile)
    // goes back to the client like any other (RFC 6749 §4.1.2.1).
    let issued = issue_code(
        &state.grant_context(),
        areq,
        SignedIn {
            session_hash: &s.id_hash,
            user_id: &s.user.id,
            auth_time: s.session.auth_time,
            amr: &s.session.amr,
        },
    )
    .await;
    let code = match issued {
        Ok(code) => code,
        Err(e) if e.code == crate::error::ErrorCode::ServerError => return Err(e),
        Err(e) if e.code == crate::error::ErrorCode::InvalidClient => {
            return Ok(pages::error(
                StatusCode::BAD_REQUEST,
                "Unknown application",
                "This application is no longer registered.",
            ))
        }
        Err(e) => return Ok(redirect_error(&state.settings.issuer, areq, &e)),
    };
    Ok(redirect_to_client(
        &state.settings.issuer,
        &areq.redirect_uri,
        areq.state.as_deref(),
        &[("code", &code)],
    ))
}
