//! One module per grant. Each validates first (pure checks producing a typed
//! request) and then returns the job that issues in the request's one
//! transaction (`client_auth::conclude`): it consumes what is single-use,
//! records every token, and writes the audit events.

pub mod authorization_code;
pub mod client_credentials;
pub mod person;
pub mod refresh_token;
pub mod token_exchange;

use crate::model::GrantType;

/// Grant types this build serves at the token endpoint. Discovery advertises
/// exactly these, and any other `grant_type` is `unsupported_grant_type`.
pub const IMPLEMENTED: &[GrantType] = &[
    GrantType::AuthorizationCode,
    GrantType::ClientCredentials,
    GrantType::RefreshToken,
    GrantType::TokenExchange,
];

pub fn is_implemented(g: GrantType) -> bool {
    IMPLEMENTED.contains(&g)
}
