//! `POST /token` (RFC 6749 §3.2), as a visible pipeline:
//! no-store → strict form → known grant type → client authentication →
//! client may use the grant → the grant's own validation → the request's one
//! transaction (`client_auth::conclude`), which also spends the client
//! assertion whatever the outcome.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::client_auth::{self, refused, AuthenticatedClient, RequestJob};
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
    let address = crate::login::address(&req);
    if !state.token_by_address.allow(&address, now) {
        return Err(crate::limits::too_many());
    }
    let auth = client_auth::authenticate(&state, &req, &form).await?;
    // A public client's id is no secret: anyone can claim it, so its budget
    // is kept per address, not per id (else anyone could exhaust it).
    let bucket = match auth.method {
        AuthMethod::None => format!("public:{}@{address}", auth.client.id),
        _ => auth.client.id.clone(),
    };
    let job = if !state.token_by_client.allow(&bucket, now) {
        refused(crate::limits::too_many())
    } else {
        run_grant(&state, &auth, grant_type, &form)
            .await
            .unwrap_or_else(refused)
    };
    let issued = client_auth::conclude(&state.store, &auth, job).await?;
    tracing::info!(client_id = %auth.client.id, grant_type = grant_type.as_str(), "tokens issued");
    Ok(no_store_json(issued.to_json()))
}

async fn run_grant(
    state: &AppState,
    auth: &AuthenticatedClient,
    grant_type: GrantType,
    form: &FormParams,
) -> Result<RequestJob<TokenResponse>, OAuthError> {
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
            grant::client_credentials::issue(state, auth, req)
        }
        GrantType::AuthorizationCode => {
            let req = grant::authorization_code::parse(form)?;
            grant::authorization_code::redeem(state, auth, req).await
        }
        GrantType::RefreshToken => {
            let req = grant::refresh_token::parse(form)?;
            grant::refresh_token::refresh(state, auth, req).await
        }
        GrantType::TokenExchange => Ok(grant::token_exchange::exchange(state, auth, form).await),
    }
}
