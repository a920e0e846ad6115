//! `POST /token` (RFC 6749 §3.2), as a visible pipeline:
//! no-store → strict form → known grant type → client authentication →
//! client may use the grant → the grant's own validation and issuance.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::client_auth::{self, AuthenticatedClient};
use crate::error::{ErrorCode, OAuthError};
use crate::grant;
use crate::http::form::{Form, FormParams};
use crate::http::no_store_json;
use crate::model::{AuthMethod, GrantType};
use crate::token::TokenResponse;

pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    Form(form): Form,
) -> Result<HttpResponse, OAuthError> {
    let grant_type = form.require("grant_type")?;
    let grant_type = GrantType::parse(grant_type)
        .filter(|g| grant::is_implemented(*g))
        .ok_or_else(|| {
            OAuthError::new(ErrorCode::UnsupportedGrantType, "unsupported grant_type")
        })?;
    let now = state.clock.now();
    if !state
        .token_by_address
        .allow(&crate::login::address(&req), now)
    {
        return Err(crate::limits::too_many());
    }
    let auth = client_auth::authenticate(&state, &req, &form).await?;
    // A public client's id is no secret (anyone can send it), so its limit
    // is counted per remote address: nobody can use it up for everyone.
    let limit_key = match auth.method {
        AuthMethod::None => format!("public:{}@{}", auth.client.id, crate::login::address(&req)),
        _ => auth.client.id.clone(),
    };
    if !state.token_by_client.allow(&limit_key, now) {
        return Err(crate::limits::too_many());
    }
    match run_grant(&state, &auth, grant_type, &form).await {
        Ok(resp) => Ok(no_store_json(resp.to_json())),
        Err(e)
            if e.code == ErrorCode::ServerError || e.code == ErrorCode::TemporarilyUnavailable =>
        {
            Err(e)
        }
        Err(e) => {
            // The request failed before its own transaction recorded the
            // assertion: record it now, so a refused assertion is still spent.
            client_auth::burn_assertion(&state, &auth).await?;
            Err(e)
        }
    }
}

async fn run_grant(
    state: &AppState,
    auth: &AuthenticatedClient,
    grant_type: GrantType,
    form: &FormParams,
) -> Result<TokenResponse, OAuthError> {
    // Public clients may use only the authorization code flow (and its refresh).
    if auth.method == AuthMethod::None
        && !matches!(
            grant_type,
            GrantType::AuthorizationCode | GrantType::RefreshToken
        )
    {
        return Err(OAuthError::unauthorized_client(
            "public clients may only use the authorization code grant",
        ));
    }
    if !auth.client.may_use(grant_type) {
        return Err(OAuthError::unauthorized_client(
            "the client is not registered for this grant type",
        ));
    }
    match grant_type {
        GrantType::ClientCredentials => {
            let req = grant::client_credentials::validate(&auth.client, form)?;
            grant::client_credentials::issue(state, auth, req).await
        }
        GrantType::AuthorizationCode => {
            let req = grant::authorization_code::parse(form)?;
            grant::authorization_code::redeem(state, auth, req).await
        }
        GrantType::RefreshToken => {
            let req = grant::refresh_token::parse(form)?;
            grant::refresh_token::refresh(state, auth, req).await
        }
        GrantType::TokenExchange => grant::token_exchange::exchange(state, auth, form).await,
    }
}
