//! `POST /token` (RFC 6749 §3.2), as a visible pipeline:
//! no-store → strict form → known grant type → client authentication →
//! client may use the grant → the grant's own validation → the request's one
//! transaction (`client_auth::conclude`), which also spends the client
//! assertion whatever the outcome.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::client_auth::{self, refused, AuthenticatedClient, RequestJob};
use crate::error::{ErrorCode, OAuthError};
use crate::grant::authorization_code::CodeRedemption;
use crate::grant::client_credentials::ClientCredentialsParams;
use crate::grant::refresh_token::RefreshRequest;
use crate::grant::token_exchange::ExchangeRequest;
use crate::grant::{self, TokenRequest};
use crate::http::form::{Form, FormParams};
use crate::http::no_store_json;
use crate::model::{AuthMethod, GrantType};
use crate::token::TokenResponse;

pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Form,
) -> Result<HttpResponse, OAuthError> {
    // Operators watch token-exchange refusals by their `error` code, whichever
    // step refused (client authentication, a limit, the grant, the store).
    let exchange =
        form.0.get("grant_type").and_then(GrantType::parse) == Some(GrantType::TokenExchange);
    let answer = answer(state, req, form).await;
    if let (true, Err(e)) = (exchange, &answer) {
        crate::metrics::exchange_refused(e.code);
    }
    answer
}

async fn answer(
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
    let address = crate::http::cookies::address(&req);
    if !state.token_by_address.allow(&address, now) {
        return Err(crate::limits::too_many());
    }
    // RFC 9449 §5: a proof, if sent, is checked before anything else.
    let proof = crate::http::dpop::proof(&state, &req, "/token", None).await?;
    let credentials = crate::http::form::client_credentials(&req, &form, &address);
    let auth = client_auth::authenticate(&state.auth_context(), &credentials).await?;
    // A public client's id is no secret: anyone can claim it, so its budget
    // is kept per address, not per id (else anyone could exhaust it).
    let bucket = match auth.method {
        AuthMethod::None => format!("public:{}@{address}", auth.client.id),
        _ => auth.client.id.clone(),
    };
    let job = if !state.token_by_client.allow(&bucket, now) {
        refused(crate::limits::too_many())
    } else {
        run_grant(&state, &auth, grant_type, &form, proof.as_ref())
            .await
            .unwrap_or_else(refused)
    };
    let job = crate::http::dpop::spend_first(proof.as_ref(), now, job);
    let issued = client_auth::conclude(&state.store, &auth, job).await?;
    crate::metrics::tokens_issued(grant_type.as_str(), &issued);
    tracing::info!(client_id = %auth.client.id, grant_type = grant_type.as_str(), "tokens issued");
    let mut answer = no_store_json(issued.to_json());
    if proof.is_some() {
        if let Some((name, value)) = crate::http::dpop::nonce_header(&state).await? {
            answer.headers_mut().insert(name, value);
        }
    }
    Ok(answer)
}

async fn run_grant(
    state: &AppState,
    auth: &AuthenticatedClient,
    grant_type: GrantType,
    form: &FormParams,
    proof: Option<&crate::dpop::ValidProof>,
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
    let request = parse(grant_type, form)?;
    let ctx = crate::grant::GrantContext {
        proof,
        ..state.grant_context()
    };
    grant::run(&ctx, auth, request).await
}

/// The form as the grant's typed request. Parameters the grant does not take
/// are not read.
fn parse(grant_type: GrantType, form: &FormParams) -> Result<TokenRequest, OAuthError> {
    let owned = |name: &str| form.get(name).map(str::to_string);
    Ok(match grant_type {
        GrantType::AuthorizationCode => TokenRequest::AuthorizationCode(CodeRedemption {
            code: form.require("code")?.to_string(),
            redirect_uri: owned("redirect_uri"),
            code_verifier: owned("code_verifier"),
            resource: owned("resource"),
        }),
        GrantType::ClientCredentials => TokenRequest::ClientCredentials(ClientCredentialsParams {
            scope: owned("scope"),
            resource: owned("resource"),
            audience: owned("audience"),
        }),
        GrantType::RefreshToken => TokenRequest::RefreshToken(RefreshRequest {
            refresh_token: form.require("refresh_token")?.to_string(),
            scope: owned("scope"),
            resource: owned("resource"),
        }),
        GrantType::TokenExchange => TokenRequest::TokenExchange(ExchangeRequest {
            subject_token: owned("subject_token"),
            subject_token_type: owned("subject_token_type"),
            actor_token: owned("actor_token"),
            actor_token_type: owned("actor_token_type"),
            requested_token_type: owned("requested_token_type"),
            audience: owned("audience"),
            resource: owned("resource"),
            scope: owned("scope"),
            requested_lifetime: owned("requested_lifetime"),
            task: owned("task"),
            may_act: owned("may_act"),
        }),
        GrantType::Ciba => TokenRequest::Ciba(crate::grant::ciba::CibaPoll {
            auth_req_id: form.require("auth_req_id")?.to_string(),
        }),
    })
}
