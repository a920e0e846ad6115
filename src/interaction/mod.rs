//! A person's sign-in, as decisions: what `/authorize`, the login and consent
//! forms and RP-initiated logout do next (log in, consent, a code back to
//! the client, an error back to it or on a page). Each returns a `Reply`;
//! the `http/` modules read the request and render the reply, nothing more.

pub mod account;
pub mod authorize;
pub mod forms;
pub mod logout;

use crate::app::AppState;
use crate::error::{ErrorCode, OAuthError};
use crate::grant::authorization_code::request::{AuthorizationRequest, ResponseMode};
use crate::grant::authorization_code::{issue_code, SignedIn};
use crate::login::CurrentSession;
use crate::model::ClientKind;
use crate::store::sessions::Interaction;

/// How long a person has to log in and consent.
pub const INTERACTION_TTL: i64 = 600;

/// What a pending interaction continues to once the person has signed in:
/// an authorization request, or the person's own account page (`/account`).
/// Stored as the interaction's `request` text, so any instance can continue it.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Authorize(Box<AuthorizationRequest>),
    /// Back to `/account`, the only place a sign-in for it returns to (a
    /// fixed path, never one the request names: no open redirect).
    Account,
}

/// The stored `request` of a sign-in for the account page.
const ACCOUNT_REQUEST: &str = r#"{"continue":"account"}"#;

impl Pending {
    pub fn stored(&self) -> Result<String, OAuthError> {
        match self {
            Pending::Authorize(areq) => {
                serde_json::to_string(areq).map_err(OAuthError::server_error)
            }
            Pending::Account => Ok(ACCOUNT_REQUEST.to_string()),
        }
    }

    pub fn parse(text: &str) -> Result<Pending, OAuthError> {
        if text == ACCOUNT_REQUEST {
            return Ok(Pending::Account);
        }
        serde_json::from_str(text)
            .map(|areq| Pending::Authorize(Box::new(areq)))
            .map_err(OAuthError::server_error)
    }

    /// The client the person signs in for, if any (for the audit trail).
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Pending::Authorize(areq) => Some(&areq.client_id),
            Pending::Account => None,
        }
    }
}

/// What the browser brought: its cookies' values and where it came from.
#[derive(Clone, Copy)]
pub struct Browser<'a> {
    /// The login session cookie's value.
    pub session: Option<&'a str>,
    /// The browser-binding cookie's value.
    pub binding: Option<&'a str>,
    pub address: &'a str,
}

/// What to show or where to send the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// To the client's redirect URI with `params`, `state` and `iss`
    /// (RFC 6749 §4.1.2, RFC 9207 §2): a 303 with them in the query, or a
    /// page that POSTs them (Form Post Response Mode).
    ToClient {
        redirect_uri: String,
        state: Option<String>,
        response_mode: ResponseMode,
        params: Vec<(&'static str, String)>,
    },
    /// 303 to a registered post-logout redirect URI, `state` appended.
    AfterLogout { uri: String, state: Option<String> },
    /// 303 to the login form of a pending interaction (`GET /login`).
    ToLoginForm { interaction: String },
    /// 303 to the person's account page, signed in now.
    ToAccount,
    Login {
        client_name: String,
        interaction: String,
        csrf: String,
        login_hint: String,
        error: Option<&'static str>,
        /// 200, 401 after a bad password, 429 when throttled.
        status: u16,
        retry_after: Option<i64>,
    },
    Consent {
        client_name: String,
        username: String,
        is_agent: bool,
        /// The API the access will be for, when it is not deputy itself.
        resource: Option<String>,
        /// (scope, plain words)
        scopes: Vec<(String, String)>,
        interaction: String,
        csrf: String,
        /// The client registered itself: what the person must see to judge it.
        self_described: Option<SelfDescribed>,
    },
    LogoutConfirm {
        csrf: String,
        post_logout_redirect_uri: Option<String>,
        client_id: Option<String>,
        state: Option<String>,
    },
    /// A page that says something went well (signed out).
    Message {
        title: &'static str,
        message: &'static str,
    },
    /// An error page: the client or redirect cannot be trusted, a form is
    /// stale, or something failed.
    Error {
        status: u16,
        title: &'static str,
        message: &'static str,
    },
    /// 429 with `Retry-After: 1`: too many sign-in requests from an address.
    TooManyRequests,
}

/// What the consent page shows about a client nobody vouched for (a
/// metadata document or a dynamic registration): its id (for a metadata
/// document, the URL it described itself at), the host the person will be
/// sent back to, and the homepage it names. Its logo is not loaded: that
/// would tell the document's author who looks at the page, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfDescribed {
    pub client_id: String,
    pub redirect_host: String,
    pub client_uri: Option<String>,
    pub by_document: bool,
}

/// An answer and the cookies that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub answer: Answer,
    /// A new login session cookie value.
    pub set_session: Option<String>,
    /// A new browser-binding cookie value.
    pub set_binding: Option<String>,
    /// End the login session cookie.
    pub clear_session: bool,
}

impl From<Answer> for Reply {
    fn from(answer: Answer) -> Self {
        Reply {
            answer,
            set_session: None,
            set_binding: None,
            clear_session: false,
        }
    }
}

pub fn server_error() -> Answer {
    Answer::Error {
        status: 500,
        title: "Something went wrong",
        message: "Please try again later.",
    }
}

/// A refusal that goes back to the client (RFC 6749 §4.1.2.1).
pub fn to_client_error(areq: &AuthorizationRequest, error: &OAuthError) -> Answer {
    error_to(
        &areq.client_id,
        &areq.redirect_uri,
        areq.state.as_deref(),
        areq.response_mode,
        error,
    )
}

pub fn error_to(
    client_id: &str,
    redirect_uri: &str,
    state: Option<&str>,
    response_mode: ResponseMode,
    error: &OAuthError,
) -> Answer {
    // Operators see in deputy's log why a sign-in failed (e.g. "PKCE
    // required"), not only the client's generic error page.
    tracing::info!(client_id, error = error.code.as_str(), reason = %error.description, "authorization error sent back to the client");
    Answer::ToClient {
        redirect_uri: redirect_uri.to_string(),
        state: state.map(str::to_string),
        response_mode,
        params: vec![
            ("error", error.code.as_str().to_string()),
            (
                "error_description",
                crate::error::sanitize_description(&error.description),
            ),
        ],
    }
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

pub async fn login_page(
    state: &AppState,
    pending: &Pending,
    i: &Interaction,
    error: Option<&'static str>,
    status: u16,
) -> Result<Answer, OAuthError> {
    let (client_name, login_hint) = match pending {
        Pending::Authorize(areq) => (
            client_of(state, &areq.client_id).await?.name,
            areq.login_hint.clone().unwrap_or_default(),
        ),
        Pending::Account => ("your account".to_string(), String::new()),
    };
    Ok(Answer::Login {
        client_name,
        interaction: i.id.clone(),
        csrf: i.csrf.clone(),
        login_hint,
        error,
        status,
        retry_after: None,
    })
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

pub async fn consent_page(
    state: &AppState,
    areq: &AuthorizationRequest,
    i: &Interaction,
    s: &CurrentSession,
) -> Result<Answer, OAuthError> {
    let client = client_of(state, &areq.client_id).await?;
    let self_described = client
        .origin
        .registration
        .self_described()
        .then(|| SelfDescribed {
            client_id: client.id.clone(),
            redirect_host: url::Url::parse(&areq.redirect_uri)
                .ok()
                .and_then(|u| {
                    u.host_str().map(|h| {
                        format!(
                            "{h}{}",
                            u.port().map(|p| format!(":{p}")).unwrap_or_default()
                        )
                    })
                })
                .unwrap_or_else(|| areq.redirect_uri.clone()),
            client_uri: client.origin.client_uri.clone(),
            by_document: client.origin.registration == crate::model::Registration::MetadataDocument,
        });
    Ok(Answer::Consent {
        client_name: client.name,
        username: s.user.username.clone(),
        is_agent: client.kind == ClientKind::Agent,
        resource: (areq.resource != state.settings.issuer).then(|| areq.resource.clone()),
        scopes: describe_scopes(state, areq).await?,
        interaction: i.id.clone(),
        csrf: i.csrf.clone(),
        self_described,
    })
}

/// The person allowed this client every (resource, scope) asked for.
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
) -> Result<Answer, OAuthError> {
    // OIDC Core §5.5.1: a `sub` value asked for in the ID token allows a
    // positive answer only for that person, whoever else signed in.
    if areq
        .claims
        .sub
        .as_ref()
        .is_some_and(|sub| *sub != s.user.id)
    {
        let e = OAuthError::new(
            ErrorCode::LoginRequired,
            "the signed-in person is not the one the claims request names",
        );
        return Ok(to_client_error(areq, &e));
    }
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
    match issued {
        Ok(code) => Ok(Answer::ToClient {
            redirect_uri: areq.redirect_uri.clone(),
            state: areq.state.clone(),
            response_mode: areq.response_mode,
            params: vec![("code", code)],
        }),
        Err(e) if e.code == ErrorCode::ServerError => Err(e),
        // Never redirect to a client that is no longer registered.
        Err(e) if e.code == ErrorCode::InvalidClient => Ok(Answer::Error {
            status: 400,
            title: "Unknown application",
            message: "This application is no longer registered.",
        }),
        Err(e) => Ok(to_client_error(areq, &e)),
    }
}
