//! Who may call the admin API: the holder of an access token deputy issued,
//! still active in the store, carrying the scope `deputy:admin` and addressed
//! to deputy itself (`aud` = the issuer). Errors follow RFC 6750 §3.1.

use crate::error::{ErrorCode, OAuthError};
use crate::store::Db;
use crate::store::Store;
use crate::token::gate::OwnTokens;

/// The scope an admin token must carry.
pub const ADMIN_SCOPE: &str = "deputy:admin";

/// An authorized admin caller: the client holding the admin token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCaller {
    pub client_id: String,
    pub client_kind: String,
    /// The admin token's own `jti` (an identifier, not the credential).
    pub jti: String,
}

/// The admin token as presented: the token, and under the DPoP scheme the
/// thumbprint of its checked proof's key (RFC 9449 §7.1).
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub token: &'a str,
    pub proof_jkt: Option<&'a str>,
}

/// RFC 6750 §3.1: no credential at all — no error code in the challenge.
fn missing() -> OAuthError {
    OAuthError::new(ErrorCode::InvalidToken, "a Bearer access token is required")
        .with_www_authenticate("Bearer")
}

/// RFC 6750 §3.1 `invalid_token`: malformed, not ours, expired or revoked
/// (the challenge in the scheme the token came with, RFC 9449 §7.1).
fn invalid_token(dpop: bool) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidToken,
        "the access token is invalid, expired or revoked",
    )
    .with_www_authenticate(crate::http::dpop::challenge(dpop, ErrorCode::InvalidToken))
}

/// RFC 6750 §3.1 `insufficient_scope`: a valid token that does not grant
/// administration (no `deputy:admin`, or addressed to another audience).
fn insufficient_scope(dpop: bool) -> OAuthError {
    let scheme = if dpop { "DPoP" } else { "Bearer" };
    OAuthError::new(
        ErrorCode::InsufficientScope,
        "the token does not grant administration of deputy",
    )
    .with_www_authenticate(format!(
        "{scheme} error=\"insufficient_scope\", scope=\"{ADMIN_SCOPE}\""
    ))
}

/// Decide whether `token` (the Bearer credential, if any) may administer.
/// The store has the last word, read fresh, so a revoked admin token stops
/// working at once; a store failure is a 5xx, never a 401 or a success.
pub async fn authorize(
    own: &OwnTokens,
    store: &Store,
    issuer: &str,
    now: i64,
    presented: Option<Presented<'_>>,
) -> Result<AdminCaller, OAuthError> {
    let Some(presented) = presented else {
        return Err(missing());
    };
    let dpop = presented.proof_jkt.is_some();
    // RFC 9068 §4: only live access tokens we signed (`typ` at+jwt).
    let record = match own.live_access_token(store, now, presented.token).await? {
        Ok(live) => live.record,
        Err(why) => {
            tracing::info!(reason = ?why, "admin request with an unacceptable token");
            return Err(invalid_token(dpop));
        }
    };
    // RFC 9449 §7.1-§7.2: a DPoP-bound admin token only with its key.
    if !crate::dpop::binding_holds(record.cnf_jkt.as_deref(), presented.proof_jkt) {
        tracing::info!(client_id = %record.client_id, jti = %record.jti, "admin token presented without its DPoP key");
        return Err(invalid_token(true));
    }
    // The record, not the JWT, decides audience and scope (RFC 9068 §4:
    // the audience must be this server; RFC 6750 §3.1: scope).
    let has_scope = record.scope.split(' ').any(|s| s == ADMIN_SCOPE);
    // Administration is a service acting for itself: a client-credentials
    // token (sub = client_id, no actor chain). A person's sign-in or a
    // delegation token never administers, whatever scope it carries.
    let own_service_token = record.subject_kind == crate::model::SubjectKind::Service
        && record.subject == record.client_id
        && record.actor_chain.is_none()
        && record.grant_type == crate::model::GrantType::ClientCredentials.as_str();
    if record.audience != issuer || !has_scope || !own_service_token {
        tracing::info!(client_id = %record.client_id, jti = %record.jti, "admin request without admin rights");
        return Err(insufficient_scope(dpop));
    }
    Ok(AdminCaller {
        client_id: record.client_id,
        client_kind: record.client_kind,
        jti: record.jti,
    })
}

/// Inside the transaction that acts for `caller`: is its admin token still
/// active and its client still registered? The gate read the headers; a
/// request body may arrive much later (a slow client holds the connection),
/// and a revocation or client removal in between must stop the action.
pub fn still_authorized(
    conn: &dyn Db,
    caller: &AdminCaller,
    now: i64,
) -> crate::store::StoreResult<Result<(), OAuthError>> {
    let deps = crate::store::liveness::Dependencies {
        client_id: caller.client_id.clone(),
        ..Default::default()
    };
    let token_active =
        crate::store::tokens::get(conn, &caller.jti)?.is_some_and(|r| r.is_active(now));
    if token_active && crate::store::liveness::still_live(conn, &deps)? {
        Ok(Ok(()))
    } else {
        Ok(Err(invalid_token(false)))
    }
}
