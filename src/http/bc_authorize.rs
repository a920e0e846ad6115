//! `POST /bc-authorize`: the backchannel authentication endpoint (OpenID
//! CIBA Core 1.0 §7, poll mode). The same pipeline as `/token`: strict
//! form → per-address limit → client authentication (the one
//! `client_auth` module, the token endpoint's methods) → per-client limit
//! → the client may use the grant → `ciba::validate` → `grant::ciba::start`
//! in the request's one transaction. After the commit, the approval
//! webhook (if set) is sent off the request path.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::ciba::{self, BackchannelParams};
use crate::client_auth::{self, refused, AuthenticatedClient, RequestJob};
use crate::error::OAuthError;
use crate::grant::ciba::Started;
use crate::http::form::{Form, FormParams};
use crate::http::no_store_json;
use crate::model::{AuthMethod, GrantType};

pub async fn bc_authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    Form(form): Form,
) -> Result<HttpResponse, OAuthError> {
    let now = state.clock.now();
    let address = crate::http::cookies::address(&req);
    if !state.token_by_address.allow(&address, now) {
        return Err(crate::limits::too_many());
    }
    let credentials = crate::http::form::client_credentials(&req, &form, &address);
    let ctx = client_auth::Context {
        at_backchannel_endpoint: true,
        ..state.auth_context()
    };
    let auth = client_auth::authenticate(&ctx, &credentials).await?;
    let job = if !state.token_by_client.allow(&auth.client.id, now) {
        refused(crate::limits::too_many())
    } else {
        start(&state, &auth, &form).await.unwrap_or_else(refused)
    };
    let started = client_auth::conclude(&state.store, &auth, job).await?;
    tracing::info!(client_id = %auth.client.id, "backchannel authentication request recorded");
    if let Some(notice) = started.notice.clone() {
        if !state.settings.approval_webhook.is_empty() {
            let state = state.clone();
            actix_web::rt::spawn(async move {
                let url = state.settings.approval_webhook.clone();
                ciba::notify::send(&state.fetcher, &url, &notice).await;
            });
        }
    }
    Ok(no_store_json(started.to_json()))
}

async fn start(
    state: &AppState,
    auth: &AuthenticatedClient,
    form: &FormParams,
) -> Result<RequestJob<Started>, OAuthError> {
    // CIBA Core §13: the request needs client authentication, which a
    // public client cannot give.
    if auth.method == AuthMethod::None {
        return Err(OAuthError::invalid_client());
    }
    if !auth.client.may_use(GrantType::Ciba) {
        return Err(OAuthError::unauthorized_client(
            "the client is not registered for the CIBA grant",
        ));
    }
    let owned = |name: &str| form.get(name).map(str::to_string);
    let params = BackchannelParams {
        scope: owned("scope"),
        login_hint: owned("login_hint"),
        id_token_hint: owned("id_token_hint"),
        login_hint_token: owned("login_hint_token"),
        binding_message: owned("binding_message"),
        requested_expiry: owned("requested_expiry"),
        resource: owned("resource"),
        task: owned("task"),
        request: owned("request"),
    };
    let checked = ciba::validate(
        &auth.client,
        &params,
        state.settings.ciba_default_expiry,
        &state.settings.issuer,
    )?;
    crate::grant::ciba::start(&state.grant_context(), auth, checked).await
}
