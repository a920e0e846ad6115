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

use std::sync::{Arc, OnceLock};

use crate::config::Settings;
use crate::keys::KeyRing;
use crate::store::Store;
use crate::token::gate::OwnTokens;

/// What a grant needs besides its typed request and the authenticated
/// client: the time, the settings, the signing keys, the store and the gate
/// for deputy's own tokens. No HTTP types, no application state.
pub struct GrantContext<'a> {
    pub now: i64,
    pub settings: &'a Settings,
    /// The keys as of this request (a snapshot: rotation swaps the ring).
    pub ring: Arc<KeyRing>,
    pub store: &'a Store,
    pub own_tokens: &'a OwnTokens,
    /// The key refresh successors are derived with, loaded once from the store.
    pub refresh_key: &'a OnceLock<String>,
    /// The request's valid DPoP proof (RFC 9449 §4.3), if it carried one:
    /// its key binds the access token issued (§5).
    pub proof: Option<&'a crate::dpop::ValidProof>,
}

impl GrantContext<'_> {
    /// The thumbprint new access tokens are bound to, if any (RFC 9449 §6.1).
    pub fn cnf_jkt(&self) -> Option<String> {
        self.proof.map(|p| p.jkt.clone())
    }
}

/// A token request, parsed at the edge: one variant per grant (RFC 6749 §4.1.3,
/// §4.4.2, §6; RFC 8693 §2.1).
pub enum TokenRequest {
    AuthorizationCode(authorization_code::CodeRedemption),
    ClientCredentials(client_credentials::ClientCredentialsParams),
    RefreshToken(refresh_token::RefreshRequest),
    TokenExchange(token_exchange::ExchangeRequest),
}

/// Run the grant of a parsed request: its checks now, and the job that
/// issues in the request's transaction.
pub async fn run(
    ctx: &GrantContext<'_>,
    auth: &crate::client_auth::AuthenticatedClient,
    request: TokenRequest,
) -> Result<crate::client_auth::RequestJob<crate::token::TokenResponse>, crate::error::OAuthError> {
    // RFC 9449 §5.2: a client registered for DPoP gets tokens only with a proof.
    if auth.client.require_dpop && ctx.proof.is_none() {
        return Err(crate::error::OAuthError::new(
            crate::error::ErrorCode::InvalidDpopProof,
            "this client must send a DPoP proof",
        ));
    }
    match request {
        TokenRequest::ClientCredentials(req) => {
            let req = client_credentials::validate(&auth.client, &req)?;
            client_credentials::issue(ctx, auth, req)
        }
        TokenRequest::AuthorizationCode(req) => authorization_code::redeem(ctx, auth, req).await,
        TokenRequest::RefreshToken(req) => refresh_token::refresh(ctx, auth, req).await,
        TokenRequest::TokenExchange(req) => Ok(token_exchange::exchange(ctx, auth, &req).await),
    }
}
