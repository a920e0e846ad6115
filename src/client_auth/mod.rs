//! Client authentication, one module for the token, introspection and
//! revocation endpoints (RFC 6749 §2.3, RFC 7523 §2.2 and §3, OIDC Core §9).
//!
//! Any failure is the same 401 `invalid_client` for an unknown client and a bad
//! credential; `WWW-Authenticate: Basic` is added when HTTP Basic was tried
//! (RFC 6749 §5.2). Two methods at once is `invalid_request`.

pub mod assertion;
pub mod conclude;
mod context;
pub mod jwks;
pub mod remote;
pub mod secret;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::error::OAuthError;
use crate::model::AuthMethod;
use crate::store::clients::Client;
pub use context::{Caches, Context};

pub use conclude::{conclude, refused, refused_and_recorded, spend, RequestJob};

pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An assertion whose `jti` is recorded as used by `conclude`, in the
/// transaction that ends the request (RFC 7523 §3 item 7).
#[derive(Debug, Clone)]
pub struct PendingAssertion {
    pub jti: String,
    pub expires_at: i64,
}

/// A client that proved who it is.
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    pub client: Client,
    pub method: AuthMethod,
    pub assertion: Option<PendingAssertion>,
}

/// What a request offers to authenticate its client, as read from the
/// request by the HTTP layer (RFC 6749 §2.3: the Authorization header and
/// the body's client parameters), before anything is checked.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The `Authorization` header: `None` when absent, `Some(None)` when it
    /// is not readable text.
    pub authorization: Option<Option<&'a str>>,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
    pub client_assertion: Option<&'a str>,
    pub client_assertion_type: Option<&'a str>,
    /// The remote address (for the failure budgets).
    pub address: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The credentials a request carries, before any is checked.
enum Presented<'a> {
    Basic {
        id: String,
        secret: String,
    },
    Assertion {
        assertion: &'a str,
        assertion_type: Option<&'a str>,
    },
    Post {
        id: &'a str,
        secret: &'a str,
    },
    Public {
        id: &'a str,
    },
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
fn parse_basic(value: &str) -> Result<(String, String), OAuthError> {
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or_else(OAuthError::invalid_client)?;
    let raw = STANDARD
        .decode(b64.trim())
        .map_err(|_unreadable| OAuthError::invalid_client())?;
    let text = String::from_utf8(raw).map_err(|_unreadable| OAuthError::invalid_client())?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(OAuthError::invalid_client)?;
    let decode = |s: &str| -> Result<String, OAuthError> {
        let plus_fixed = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus_fixed)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_unreadable| OAuthError::invalid_client())
    };
    let (id, secret) = (decode(id)?, decode(secret)?);
    // RFC 6749 Appendix A: no NUL in an id or secret (nor in PostgreSQL text).
    if id.is_empty() || secret.is_empty() || id.contains('\0') || secret.contains('\0') {
        return Err(OAuthError::invalid_client());
    }
    Ok((id, secret))
}

fn presented<'a>(form: &Credentials<'a>) -> Result<Presented<'a>, OAuthError> {
    let basic = match form.authorization {
        Some(v) => {
            let v = v.ok_or_else(OAuthError::invalid_client)?;
            let scheme = v.split(' ').next().unwrap_or("");
            if scheme.eq_ignore_ascii_case("basic") {
                let creds = v.get(scheme.len()..).unwrap_or("").trim();
                Some(parse_basic(&format!("Basic {creds}"))?)
            } else {
                None // a Bearer header is not client authentication
            }
        }
        None => None,
    };
    let assertion = form.client_assertion;
    let assertion_type = form.client_assertion_type;
    let post_secret = form.client_secret;
    let used = [
        basic.is_some(),
        assertion.is_some() || assertion_type.is_some(),
        post_secret.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if used > 1 {
        // RFC 6749 §2.3: a client MUST NOT use more than one method per request.
        return Err(OAuthError::invalid_request(
            "more than one client authentication method",
        ));
    }
    if let Some((id, secret)) = basic {
        if let Some(form_id) = form.client_id {
            if form_id != id {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the Authorization header",
                ));
            }
        }
        return Ok(Presented::Basic { id, secret });
    }
    if let Some(a) = assertion {
        return Ok(Presented::Assertion {
            assertion: a,
            assertion_type,
        });
    }
    if assertion_type.is_some() {
        return Err(OAuthError::invalid_client());
    }
    match (form.client_id, post_secret) {
        (Some(id), Some(secret)) => Ok(Presented::Post { id, secret }),
        (None, Some(_)) => Err(OAuthError::invalid_client()),
        (Some(id), None) => Ok(Presented::Public { id }),
        (None, None) => Err(OAuthError::invalid_client()),
    }
}

/// The client an id names, if it may be used now (`client_registry` is the
/// one owner of that: blocked, expired and metadata-document clients).
async fn load_client(state: &Context<'_>, id: &str) -> Result<Option<Client>, OAuthError> {
    let lookup = crate::client_registry::Lookup {
        store: state.store,
        settings: state.settings,
        fetcher: state.fetcher,
        registry: state.registry,
        now: state.now,
    };
    match crate::client_registry::resolve(&lookup, id).await {
        Ok(c) => Ok(c),
        Err(crate::client_registry::Refusal::Document(why)) => {
            tracing::info!(client_id = %id, reason = %why, "client metadata document unusable");
            Ok(None)
        }
        Err(crate::client_registry::Refusal::Unavailable(e)) => Err(e),
    }
}

impl Presented<'_> {
    /// The client id the request claims (not proven): an assertion's `iss`
    /// when no `client_id` parameter names it.
    fn claimed_id(&self, form: &Credentials<'_>) -> Option<String> {
        match self {
            Presented::Basic { id, .. } => Some(id.clone()),
            Presented::Post { id, .. } | Presented::Public { id } => Some(id.to_string()),
            Presented::Assertion { assertion, .. } => {
                form.client_id.map(str::to_string).or_else(|| {
                    crate::token::jws::decode_unverified(assertion)
                        .ok()?
                        .payload
                        .get("iss")?
                        .as_str()
                        .map(str::to_string)
                })
            }
        }
    }
}

/// Authenticate the client of a token, introspection or revocation request.
///
/// A failed authentication (`invalid_client`) is counted against the failure
/// budgets of the claimed client id and of the remote address
/// (`auth_failure_limit` per `auth_failure_window`); once either is spent a
/// further failure is 429 `temporarily_unavailable` with `Retry-After` instead
/// of 401. The credential is always checked in full first, so a client that
/// authenticates correctly is never refused for other people's failures.
pub async fn authenticate(
    state: &Context<'_>,
    form: &Credentials<'_>,
) -> Result<AuthenticatedClient, OAuthError> {
    let presented = presented(form).map_err(|e| count_failure(state, form.address, None, e))?;
    check_presented(state, &presented, form).await.map_err(|e| {
        count_failure(
            state,
            form.address,
            presented.claimed_id(form).as_deref(),
            e,
        )
    })
}

/// Count an authentication failure; the answer is `e` while both budgets
/// last, 429 once one is spent. Other errors (a malformed request, a busy
/// store) are not authentication failures and pass unchanged.
fn count_failure(
    state: &Context<'_>,
    address: &str,
    client_id: Option<&str>,
    e: OAuthError,
) -> OAuthError {
    if e.code != crate::error::ErrorCode::InvalidClient {
        return e;
    }
    let address_key = format!("a:{address}");
    let client_key = client_id.map(|id| format!("c:{id}"));
    let keys: Vec<&str> = std::iter::once(address_key.as_str())
        .chain(client_key.as_deref())
        .collect();
    match state.auth_failures.fail(&keys, state.now) {
        crate::limits::Spent::Within => e,
        crate::limits::Spent::Over { retry_after, first } => {
            if first {
                // Once per budget and window, not once per request.
                let shown: String = client_id.unwrap_or("").chars().take(64).collect();
                tracing::warn!(%address, client_id = ?shown, "too many failed client authentications");
            }
            crate::limits::too_many_after(retry_after)
        }
    }
}

async fn check_presented(
    state: &Context<'_>,
    presented: &Presented<'_>,
    form: &Credentials<'_>,
) -> Result<AuthenticatedClient, OAuthError> {
    match presented {
        Presented::Basic { id, secret } => {
            let client = load_client(state, id).await?;
            secret::check(state, client, secret, AuthMethod::ClientSecretBasic)
                .await
                .map_err(|_unreadable| OAuthError::invalid_client())
        }
        Presented::Post { id, secret } => {
            let client = load_client(state, id).await?;
            secret::check(state, client, secret, AuthMethod::ClientSecretPost).await
        }
        Presented::Assertion {
            assertion,
            assertion_type,
        } => {
            if *assertion_type != Some(JWT_BEARER_ASSERTION_TYPE) {
                return Err(OAuthError::invalid_client());
            }
            assertion::check(state, assertion, form.client_id).await
        }
        Presented::Public { id } => {
            let client = load_client(state, id)
                .await?
                .ok_or_else(OAuthError::invalid_client)?;
            if client.auth_method != AuthMethod::None {
                return Err(OAuthError::invalid_client());
            }
            Ok(AuthenticatedClient {
                client,
                method: AuthMethod::None,
                assertion: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let v = format!("Basic {}", STANDARD.encode("my%20client:s%3Acret+x"));
        assert_eq!(
            parse_basic(&v).unwrap(),
            ("my client".to_string(), "s:cret x".to_string())
        );
        assert!(parse_basic("Basic !!!").is_err());
        assert!(parse_basic(&format!("Basic {}", STANDARD.encode("nocolon"))).is_err());
        assert!(parse_basic(&format!("Basic {}", STANDARD.encode(":secret"))).is_err());
        assert!(parse_basic(&format!("Basic {}", STANDARD.encode("a%00:secret"))).is_err());
        assert!(parse_basic(&format!("Basic {}", STANDARD.encode("a:se\0cret"))).is_err());
    }
}
