//! Tokens presented to the exchange (subject and actor tokens): only access
//! tokens deputy itself issued, verified and still active (RFC 8693 §2.1,
//! §2.2.2: anything else is `invalid_request`).

use serde_json::{Map, Value};

use crate::error::OAuthError;
use crate::grant::GrantContext;
use crate::store::tokens::TokenRecord;
use crate::token::gate::NotLive;

pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A subject or actor token that passed every check.
#[derive(Debug, Clone)]
pub struct PresentedToken {
    pub claims: Map<String, Value>,
    pub record: TokenRecord,
}

impl PresentedToken {
    pub fn act(&self) -> Option<Value> {
        self.record
            .actor_chain
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
    }
    pub fn scope(&self) -> Vec<String> {
        self.record
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
    pub fn auth_time(&self) -> Option<i64> {
        crate::token::jws::numeric_date(self.claims.get("auth_time"))
    }
}

/// A presented token refused. The answer is the same `invalid_request` for
/// an unknown, revoked, expired, foreign or not-entitled token, so that an
/// exchange tells a caller no more than introspection would
/// (`{"active": false}`, RFC 7662 §2.2); the audit trail keeps the reason.
pub fn refusal(role: &'static str, why: &str) -> OAuthError {
    let public = match role {
        "actor_token" => "actor_token is not an active token this client may use",
        _ => "subject_token is not an active token this client may exchange",
    };
    OAuthError::invalid_request(public).with_detail(format!("{role} {why}"))
}

/// Check a presented token and its declared type.
pub async fn validate(
    ctx: &GrantContext<'_>,
    role: &'static str,
    token: &str,
    token_type: &str,
) -> Result<PresentedToken, OAuthError> {
    // RFC 8693 §3: only the access-token and JWT types name what deputy issues.
    if token_type != ACCESS_TOKEN_TYPE && token_type != JWT_TYPE {
        return Err(OAuthError::invalid_request(match role {
            "actor_token" => "actor_token_type is not supported (use an access token)",
            _ => "subject_token_type is not supported (use an access token)",
        }));
    }
    let now = ctx.now;
    // A type that does not match the token (an ID token, a refresh token,
    // another issuer's token, an expired or revoked one) fails the gate.
    match ctx
        .own_tokens
        .live_access_token(ctx.store, now, token)
        .await?
    {
        Ok(live) => Ok(PresentedToken {
            claims: live.claims,
            record: live.record,
        }),
        Err(why) => {
            tracing::info!(role, reason = ?why, "presented token refused");
            Err(refusal(
                role,
                match why {
                    NotLive::Invalid(_) => {
                        "is not a valid, unexpired access token issued by this server"
                    }
                    _ => "is revoked or unknown",
                },
            ))
        }
    }
}
