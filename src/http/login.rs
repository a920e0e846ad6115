//! `POST /login` and `POST /consent`: the forms of a pending interaction.
//! Both require the interaction's CSRF token and the browser it was started
//! in; a missing or wrong one is 403 and changes nothing.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::audit::{AuditEvent, Mode};
use crate::error::OAuthError;
use crate::grant::authorization_code::request::AuthorizationRequest;
use crate::http::authorize::{
    complete, has_consent, redirect_error, render_consent, render_login, server_error_page,
};
use crate::http::form::{Form, FormParams};
use crate::http::pages;
use crate::login::{self, CurrentSession, LoginFailure};
use crate::secret::{constant_time_eq, random_token, sha256_b64};
use crate::store::sessions::{Interaction, Session};

fn forbidden() -> HttpResponse {
    pages::error(
        StatusCode::FORBIDDEN,
        "Request refused",
        "This form has expired or did not come from this browser. Start again from the application.",
    )
}

/// Load the interaction a form names, if this browser started it and the CSRF
/// token matches.
async fn checked_interaction(
    state: &AppState,
    req: &HttpRequest,
    form: &FormParams,
) -> Result<Option<(Interaction, AuthorizationRequest)>, OAuthError> {
    let (Some(id), Some(csrf)) = (form.get("interaction"), form.get("csrf")) else {
        return Ok(None);
    };
    let Some(browser) = req.cookie(login::BROWSER_COOKIE) else {
        return Ok(None);
    };
    let id = id.to_string();
    let Some(i) = state
        .store
        .read(move |c| crate::store::sessions::get_interaction(c, &id))
        .await?
    else {
        return Ok(None);
    };
    let browser_ok = constant_time_eq(
        sha256_b64(browser.value().as_bytes()).as_bytes(),
        i.browser_hash.as_bytes(),
    );
    let csrf_ok = constant_time_eq(csrf.as_bytes(), i.csrf.as_bytes());
    if !browser_ok || !csrf_ok || i.expires_at <= state.clock.now() {
        return Ok(None);
    }
    let areq: AuthorizationRequest =
        serde_json::from_str(&i.request).map_err(OAuthError::server_error)?;
    Ok(Some((i, areq)))
}

pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Result<Form, OAuthError>,
) -> HttpResponse {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return pages::form_error(&e, forbidden()),
    };
    if !state
        .login_by_address
        .allow(&login::address(&req), state.clock.now())
    {
        return pages::too_many_requests();
    }
    match do_login(&state, &req, &form).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "login failed");
            server_error_page()
        }
    }
}

async fn do_login(
    state: &AppState,
    req: &HttpRequest,
    form: &FormParams,
) -> Result<HttpResponse, OAuthError> {
    let Some((interaction, areq)) = checked_interaction(state, req, form).await? else {
        return Ok(forbidden());
    };
    let username = form
        .get("username")
        .unwrap_or("")
        .chars()
        .take(128)
        .collect::<String>();
    let password = form.get("password").unwrap_or("");
    let now = state.clock.now();
    let address = login::address(req);
    let user = match login::check_password(state, &username, password, &address).await? {
        Ok(u) => u,
        Err(LoginFailure::Throttled(wait)) => {
            // Not one audit row per attempt: the attempt joins its burst,
            // written as one `login_throttled` event when the burst ends
            // (`login::flush_throttled`). The person when the name is an
            // account's; an unknown name is not kept.
            let name = username.clone();
            let person = state
                .store
                .read(move |c| Ok(crate::store::users::by_username(c, &name)?.map(|u| u.id)))
                .await?;
            state
                .throttled_logins
                .record(person, &address, &areq.client_id, now);
            let mut r = render_login(
                state,
                &areq,
                &interaction,
                Some("Too many attempts. Wait a moment and try again."),
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await?;
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&wait.to_string()) {
                r.headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, v);
            }
            return Ok(r);
        }
        Err(LoginFailure::BadCredentials) => {
            let mut e =
                AuditEvent::new(now, "login_failed", Mode::Person).refused("bad credentials");
            e.client_id = Some(areq.client_id.clone());
            e.detail =
                Some(serde_json::json!({"address": address, "throttled": false}).to_string());
            // The person, when the name is an account's, so their failed
            // logins show in their trail; an unknown name is not recorded
            // (people type passwords into the name field).
            let name = username.clone();
            state
                .store
                .write(move |c| {
                    e.person = crate::store::users::by_username(c, &name)?.map(|u| u.id);
                    crate::store::audit::insert(c, &e)
                })
                .await?;
            // One generic message for an unknown person and a wrong password.
            return render_login(
                state,
                &areq,
                &interaction,
                Some("The username or password is incorrect."),
                StatusCode::UNAUTHORIZED,
            )
            .await;
        }
    };
    // A new session id at every login (session fixation).
    let session_value = random_token(32);
    let session = Session {
        user_id: user.id.clone(),
        auth_time: now,
        amr: "pwd".to_string(),
        expires_at: now + state.settings.session_ttl,
    };
    let old = req
        .cookie(login::SESSION_COOKIE)
        .map(|c| sha256_b64(c.value().as_bytes()));
    let id_hash = sha256_b64(session_value.as_bytes());
    {
        let (s, h, iid) = (session.clone(), id_hash.clone(), interaction.id.clone());
        let mut e = AuditEvent::new(now, "login", Mode::Person).person(Some(&user.id));
        e.client_id = Some(areq.client_id.clone());
        state
            .store
            .write(move |c| {
                if let Some(old) = old {
                    crate::store::sessions::delete_session(c, &old)?;
                }
                crate::store::sessions::insert_session(c, &h, &s, now)?;
                crate::store::sessions::mark_login_done(c, &iid)?;
                crate::store::audit::insert(c, &e)
            })
            .await?;
    }
    let current = CurrentSession {
        id_hash,
        session,
        user,
    };
    let mut resp = if has_consent(state, &current.user.id, &areq).await? && !areq.prompt.consent {
        let taken = {
            let id = interaction.id.clone();
            state
                .store
                .write(move |c| crate::store::sessions::take_interaction(c, &id))
                .await?
        };
        if !taken {
            return Ok(forbidden());
        }
        complete(state, &areq, &current).await?
    } else {
        render_consent(state, &areq, &interaction, &current).await?
    };
    let _ = resp.add_cookie(&login::session_cookie(&state.settings, session_value));
    Ok(resp)
}

pub async fn consent(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Result<Form, OAuthError>,
) -> HttpResponse {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return pages::form_error(&e, forbidden()),
    };
    match do_consent(&state, &req, &form).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "consent failed");
            server_error_page()
        }
    }
}

async fn do_consent(
    state: &AppState,
    req: &HttpRequest,
    form: &FormParams,
) -> Result<HttpResponse, OAuthError> {
    let Some((interaction, areq)) = checked_interaction(state, req, form).await? else {
        return Ok(forbidden());
    };
    let Some(current) = login::current(state, req).await? else {
        return Ok(forbidden());
    };
    if !interaction.login_done {
        return Ok(forbidden());
    }
    let decision = form.get("decision");
    if decision != Some("allow") && decision != Some("deny") {
        return Ok(pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "Choose Allow or Deny.",
        ));
    }
    let now = state.clock.now();
    let allow = decision == Some("allow");
    let (iid, uid, cid, scope, resource) = (
        interaction.id.clone(),
        current.user.id.clone(),
        areq.client_id.clone(),
        areq.scope.clone(),
        areq.resource.clone(),
    );
    let mut e = AuditEvent::new(
        now,
        if allow {
            "consent_given"
        } else {
            "consent_denied"
        },
        Mode::Person,
    )
    .person(Some(&uid));
    e.client_id = Some(cid.clone());
    e.scope = Some(scope.join(" "));
    // The audience is part of what the person allowed (RFC 8707 §2).
    e.audience = Some(resource.clone());
    let taken = state
        .store
        .write(move |c| {
            // One atomic statement: a form submitted twice completes once.
            if !crate::store::sessions::take_interaction(c, &iid)? {
                return Ok(false);
            }
            // A client removed while the page was open gets no consent that a
            // client registered again under its id would inherit.
            let client_there = crate::store::liveness::still_live(
                c,
                &crate::store::liveness::Dependencies {
                    client_id: cid.clone(),
                    ..Default::default()
                },
            )?;
            if !client_there {
                return Ok(false);
            }
            if allow {
                crate::store::consents::remember(c, &uid, &cid, &resource, &scope, now)?;
            }
            crate::store::audit::insert(c, &e)?;
            Ok(true)
        })
        .await?;
    if !taken {
        return Ok(forbidden());
    }
    if !allow {
        return Ok(redirect_error(
            &state.settings.issuer,
            &areq,
            &OAuthError::new(
                crate::error::ErrorCode::AccessDenied,
                "the person denied the request",
            ),
        ));
    }
    complete(state, &areq, &current).await
}
