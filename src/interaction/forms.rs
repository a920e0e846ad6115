//! The login and consent forms of a pending interaction. Both require the
//! interaction's CSRF token and the browser it was started in; a missing or
//! wrong one is 403 and changes nothing.

use crate::app::AppState;
use crate::audit::{AuditEvent, Mode};
use crate::error::{ErrorCode, OAuthError};
use crate::login::{CurrentSession, LoginFailure};
use crate::secret::{constant_time_eq, random_token, sha256_b64};
use crate::store::sessions::{Interaction, Session};

use super::{
    complete, consent_page, has_consent, login_page, to_client_error, Answer, Browser, Pending,
    Reply,
};

/// What the login form sent.
pub struct LoginForm<'a> {
    pub interaction: Option<&'a str>,
    pub csrf: Option<&'a str>,
    pub username: &'a str,
    pub password: &'a str,
}

/// What the consent form sent.
pub struct ConsentForm<'a> {
    pub interaction: Option<&'a str>,
    pub csrf: Option<&'a str>,
    pub decision: Option<&'a str>,
}

pub fn forbidden() -> Answer {
    Answer::Error {
        status: 403,
        title: "Request refused",
        message: "This form has expired or did not come from this browser. Start again from the application.",
    }
}

/// The pending interaction `id` names, if this browser started it and it
/// has not expired.
async fn browser_interaction(
    state: &AppState,
    browser: Browser<'_>,
    id: Option<&str>,
) -> Result<Option<(Interaction, Pending)>, OAuthError> {
    let (Some(id), Some(binding)) = (id, browser.binding) else {
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
        sha256_b64(binding.as_bytes()).as_bytes(),
        i.browser_hash.as_bytes(),
    );
    if !browser_ok || i.expires_at <= state.clock.now() {
        return Ok(None);
    }
    let pending = Pending::parse(&i.request)?;
    Ok(Some((i, pending)))
}

/// The interaction a form names, if this browser started it and the CSRF
/// token matches.
async fn checked_interaction(
    state: &AppState,
    browser: Browser<'_>,
    id: Option<&str>,
    csrf: Option<&str>,
) -> Result<Option<(Interaction, Pending)>, OAuthError> {
    let Some(csrf) = csrf else {
        return Ok(None);
    };
    Ok(browser_interaction(state, browser, id)
        .await?
        .filter(|(i, _)| constant_time_eq(csrf.as_bytes(), i.csrf.as_bytes())))
}

/// `GET /login?interaction=…`: the login form of a sign-in this browser
/// started and has not finished (the account page sends people here).
pub async fn login_form(
    state: &AppState,
    browser: Browser<'_>,
    id: Option<&str>,
) -> Result<Reply, OAuthError> {
    match browser_interaction(state, browser, id).await? {
        Some((i, pending)) if !i.login_done => {
            Ok(login_page(state, &pending, &i, None, 200).await?.into())
        }
        _ => Ok(forbidden().into()),
    }
}

/// `POST /login`.
pub async fn login(
    state: &AppState,
    browser: Browser<'_>,
    form: LoginForm<'_>,
) -> Result<Reply, OAuthError> {
    let Some((interaction, pending)) =
        checked_interaction(state, browser, form.interaction, form.csrf).await?
    else {
        return Ok(forbidden().into());
    };
    let client_id = pending.client_id().map(str::to_string);
    let username = form.username.chars().take(128).collect::<String>();
    let now = state.clock.now();
    let address = browser.address;
    let checked = crate::login::check_password(
        &state.store,
        &state.throttle,
        &state.dummy_hashes.password,
        now,
        (&username, form.password, address),
    )
    .await?;
    let user = match checked {
        Ok(u) => u,
        Err(LoginFailure::Throttled(wait)) => {
            crate::metrics::login_throttled();
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
                .record(person, address, client_id.as_deref().unwrap_or(""), now);
            let mut page = login_page(
                state,
                &pending,
                &interaction,
                Some("Too many attempts. Wait a moment and try again."),
                429,
            )
            .await?;
            if let Answer::Login { retry_after, .. } = &mut page {
                *retry_after = Some(wait);
            }
            return Ok(page.into());
        }
        Err(LoginFailure::BadCredentials) => {
            crate::metrics::login_failed();
            let mut e =
                AuditEvent::new(now, "login_failed", Mode::Person).refused("bad credentials");
            e.client_id = client_id.clone();
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
            let page = login_page(
                state,
                &pending,
                &interaction,
                Some("The username or password is incorrect."),
                401,
            )
            .await?;
            return Ok(page.into());
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
    let old = browser.session.map(|v| sha256_b64(v.as_bytes()));
    let id_hash = sha256_b64(session_value.as_bytes());
    {
        let (s, h, iid) = (session.clone(), id_hash.clone(), interaction.id.clone());
        let mut e = AuditEvent::new(now, "login", Mode::Person).person(Some(&user.id));
        e.client_id = client_id.clone();
        state
            .store
            .write(move |c| {
                if let Some(old) = &old {
                    crate::store::sessions::delete_session(c, old)?;
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
    let areq = match pending {
        Pending::Authorize(areq) => areq,
        // A sign-in for the account page ends there: one DELETE, so a form
        // submitted twice signs in once.
        Pending::Account => {
            let id = interaction.id.clone();
            let taken = state
                .store
                .write(move |c| crate::store::sessions::take_interaction(c, &id))
                .await?;
            if !taken {
                return Ok(forbidden().into());
            }
            return Ok(Reply {
                answer: Answer::ToAccount,
                set_session: Some(session_value),
                set_binding: None,
                clear_session: false,
            });
        }
    };
    let answer = if has_consent(state, &current.user.id, &areq).await? && !areq.prompt.consent {
        let taken = {
            let id = interaction.id.clone();
            state
                .store
                .write(move |c| crate::store::sessions::take_interaction(c, &id))
                .await?
        };
        if !taken {
            return Ok(forbidden().into());
        }
        complete(state, &areq, &current).await?
    } else {
        consent_page(state, &areq, &interaction, &current).await?
    };
    Ok(Reply {
        answer,
        set_session: Some(session_value),
        set_binding: None,
        clear_session: false,
    })
}

/// `POST /consent`.
pub async fn consent(
    state: &AppState,
    browser: Browser<'_>,
    form: ConsentForm<'_>,
) -> Result<Reply, OAuthError> {
    let Some((interaction, Pending::Authorize(areq))) =
        checked_interaction(state, browser, form.interaction, form.csrf).await?
    else {
        return Ok(forbidden().into());
    };
    let now = state.clock.now();
    let Some(current) = crate::login::current(&state.store, now, browser.session).await? else {
        return Ok(forbidden().into());
    };
    if !interaction.login_done {
        return Ok(forbidden().into());
    }
    let allow = match form.decision {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return Ok(Answer::Error {
                status: 400,
                title: "Invalid request",
                message: "Choose Allow or Deny.",
            }
            .into())
        }
    };
    let (iid, uid, cid, scope, resource) = (
        interaction.id.clone(),
        current.user.id.clone(),
        areq.client_id.clone(),
        areq.scope.clone(),
        areq.resource.clone(),
    );
    let event = if allow {
        "consent_given"
    } else {
        "consent_denied"
    };
    let mut e = AuditEvent::new(now, event, Mode::Person).person(Some(&uid));
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
        return Ok(forbidden().into());
    }
    if !allow {
        let e = OAuthError::new(ErrorCode::AccessDenied, "the person denied the request");
        return Ok(to_client_error(&areq, &e).into());
    }
    Ok(complete(state, &areq, &current).await?.into())
}
