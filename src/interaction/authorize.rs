//! `/authorize` (RFC 6749 §4.1.1, OIDC Core §3.1.2): validate the request,
//! then decide what the person must still do — log in, consent, or nothing —
//! and answer with a page or a redirect to the client.

use crate::app::AppState;
use crate::error::{ErrorCode, OAuthError};
use crate::grant::authorization_code::request::{
    validate, AuthorizationRequest, AuthorizeError, AuthorizeParams,
};
use crate::login::CurrentSession;
use crate::secret::{random_token, sha256_b64};
use crate::store::sessions::Interaction;

use super::{
    complete, consent_page, error_to, has_consent, login_page, to_client_error, Answer, Browser,
    Reply, INTERACTION_TTL,
};

/// Validate an authorization request and decide what comes next.
pub async fn start(
    state: &AppState,
    browser: Browser<'_>,
    params: &impl AuthorizeParams,
) -> Result<Reply, OAuthError> {
    let client = match params.get("client_id") {
        Some(id) => match crate::client_registry::resolve(&state.client_lookup(), id).await {
            Ok(c) => c,
            // Never redirect for a client whose own description cannot be
            // used (RFC 6749 §4.1.2.1): the redirect URIs are not known good.
            Err(crate::client_registry::Refusal::Document(why)) => {
                tracing::info!(client_id = %id, reason = %why, "client metadata document unusable");
                return Ok(Answer::Error {
                    status: 400,
                    title: "Cannot continue",
                    message: "The application's metadata document cannot be used.",
                }
                .into());
            }
            Err(crate::client_registry::Refusal::Unavailable(e)) => return Err(e),
        },
        None => None,
    };
    // A self-described client may ask for any resource the operator registered.
    let client = match client {
        Some(c) => Some(
            crate::client_registry::effective_for_resource(&state.store, c, params.get("resource"))
                .await?,
        ),
        None => None,
    };
    let self_described = client
        .as_ref()
        .is_some_and(|c| c.origin.registration.self_described());
    let mut areq = match validate(client.as_ref(), params, &state.settings.issuer) {
        Ok(r) => r,
        Err(AuthorizeError::Page(message)) => {
            return Ok(Answer::Error {
                status: 400,
                title: "Cannot continue",
                message,
            }
            .into())
        }
        Err(AuthorizeError::Redirect {
            redirect_uri,
            state: st,
            response_mode,
            error,
        }) => {
            let client_id = params.get("client_id").unwrap_or_default();
            return Ok(error_to(
                client_id,
                &redirect_uri,
                st.as_deref(),
                response_mode,
                &error,
            )
            .into());
        }
    };
    // RFC 8252 §8.6: a loopback redirect can be received by any program on
    // the person's machine, and nobody vouched for this client: the person
    // is asked every time, never answered silently from a remembered consent.
    if self_described && crate::policy::redirect::is_loopback(&areq.redirect_uri) {
        areq.prompt.consent = true;
    }
    // OIDC Core §3.1.2.1: the hint must be an ID token deputy issued
    // (signature and issuer; it may have expired).
    let hint_sub = match params.get("id_token_hint") {
        None => None,
        Some(t) => match state.own_tokens.id_token_hint(state.clock.now(), t) {
            Ok(h) => h.str_claim("sub").map(str::to_string),
            Err(_) => {
                let e = OAuthError::invalid_request("id_token_hint is not valid");
                return Ok(to_client_error(&areq, &e).into());
            }
        },
    };
    // OIDC Core §5.5.1: a requested `sub` value names the person too.
    let hint_sub = areq.claims.sub.clone().or(hint_sub);
    proceed(state, browser, areq, hint_sub.as_deref()).await
}

/// Decide what the person must still do: log in, consent, or nothing.
async fn proceed(
    state: &AppState,
    browser: Browser<'_>,
    areq: AuthorizationRequest,
    hint_sub: Option<&str>,
) -> Result<Reply, OAuthError> {
    let now = state.clock.now();
    let session = crate::login::current(&state.store, now, browser.session).await?;
    // OIDC Core §3.1.2.1: prompt=login and an exceeded max_age force a new login.
    // max_age=0 asks for a fresh login every time (seconds are whole here).
    let too_old = |s: &CurrentSession| {
        areq.max_age
            .is_some_and(|m| m == 0 || now - s.session.auth_time > m)
    };
    // OIDC Core §3.1.2.1: a hint naming another person than the signed-in
    // one needs that person's login (login_required with prompt=none).
    let other_person = |s: &CurrentSession| hint_sub.is_some_and(|h| h != s.user.id);
    let need_login = match &session {
        None => true,
        Some(s) => areq.prompt.login || too_old(s) || other_person(s),
    };
    if need_login && areq.prompt.none {
        // A `claims` sub value answered "not this person" before consent
        // would tell any client whether the visitor is that person: without
        // consent the answer is consent_required whoever it names.
        if let (Some(s), Some(_)) = (&session, &areq.claims.sub) {
            let only_the_sub = !areq.prompt.login && !too_old(s);
            if only_the_sub && !has_consent(state, &s.user.id, &areq).await? {
                let e = OAuthError::new(ErrorCode::ConsentRequired, "consent is required");
                return Ok(to_client_error(&areq, &e).into());
            }
        }
        let e = OAuthError::new(ErrorCode::LoginRequired, "the person is not signed in");
        return Ok(to_client_error(&areq, &e).into());
    }
    if let (false, Some(s)) = (need_login, &session) {
        let consented = has_consent(state, &s.user.id, &areq).await?;
        if consented && !areq.prompt.consent {
            return Ok(complete(state, &areq, s).await?.into());
        }
        if areq.prompt.none {
            let e = OAuthError::new(ErrorCode::ConsentRequired, "consent is required");
            return Ok(to_client_error(&areq, &e).into());
        }
    }
    // Start an interaction bound to this browser. Each one is a row: the
    // same per-address limit as login posts keeps a flood from filling the store.
    if !state.login_by_address.allow(browser.address, now) {
        return Ok(Answer::TooManyRequests.into());
    }
    let (binding, new_binding) = crate::login::browser_binding(browser.binding);
    let interaction = Interaction {
        id: random_token(24),
        browser_hash: sha256_b64(binding.as_bytes()),
        csrf: random_token(24),
        request: serde_json::to_string(&areq).map_err(OAuthError::server_error)?,
        login_done: !need_login,
        expires_at: now + INTERACTION_TTL,
    };
    let stored = interaction.clone();
    state
        .store
        .write(move |c| crate::store::sessions::insert_interaction(c, &stored, now))
        .await?;
    let answer = match (need_login, &session) {
        (false, Some(s)) => consent_page(state, &areq, &interaction, s).await?,
        _ => {
            let pending = super::Pending::Authorize(Box::new(areq.clone()));
            login_page(state, &pending, &interaction, None, 200).await?
        }
    };
    Ok(Reply {
        answer,
        set_session: None,
        set_binding: new_binding.then_some(binding),
        clear_session: false,
    })
}
