//! One module per grant. Each validates first (pure checks producing a typed
//! request) and then issues in one store transaction that consumes what is
//! single-use, records every token, and writes the audit events.

pub mod authorization_code;
pub mod client_credentials;
pub mod person;
pub mod refresh_token;
pub mod token_exchange;

use rusqlite::Connection;

use crate::client_auth::PendingAssertion;
use crate::error::OAuthError;
use crate::model::GrantType;
use crate::store::StoreResult;

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

/// Inside a grant's transaction: record the client assertion's `jti` as used.
/// `Err(invalid_client)` on replay (RFC 7523 §3 item 7). Under `write_outcome`
/// a later refusal rolls the record back while `spent` stays set, so refuse
/// before calling this there.
pub fn consume_assertion(
    conn: &Connection,
    client_id: &str,
    assertion: Option<&PendingAssertion>,
) -> StoreResult<Result<(), OAuthError>> {
    if let Some(a) = assertion {
        if !crate::store::tokens::consume_assertion_jti(conn, client_id, &a.jti, a.expires_at)? {
            return Ok(Err(OAuthError::invalid_client()));
        }
        a.spent.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    Ok(Ok(()))
}
