//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2, §3).
//! With a valid `id_token_hint` issued from the current session the session
//! ends at once; otherwise the person confirms on a page (with a CSRF token)
//! first.

use crate::app::AppState;
use crate::audit::{AuditEvent, Mode};
use crate::error::OAuthError;
use crate::secret::{constant_time_eq, sha256_b64};

use super::{Answer, Browser, Reply};

/// What a logout request sent (query or form).
pub struct LogoutRequest<'a> {
    pub id_token_hint: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub state: Option<&'a str>,
    /// The confirmation form was posted (`confirm=yes` by POST).
    pub confirmed_by_post: bool,
    pub csrf: Option<&'a str>,
}

/// The logout confirmation's CSRF token: bound to this browser's cookie.
fn logout_csrf(binding: &str) -> String {
    sha256_b64(format!("deputy logout\0{binding}").as_bytes())
}

fn cannot(message: &'static str) -> Reply {
    Answer::Error {
        status: 400,
        title: "Cannot sign out",
        message,
    }
    .into()
}

pub async fn logout(
    state: &AppState,
    browser: Browser<'_>,
    p: LogoutRequest<'_>,
) -> Result<Reply, OAuthError> {
    let now = state.clock.now();
    // §2: the hint identifies the client (its `aud`) and the person; it may
    // have expired, but must be signed by us for our issuer.
    let hint = match p.id_token_hint {
        Some(t) => match state.own_tokens.id_token_hint(now, t) {
            Ok(v) => Some(v),
            Err(_) => return Ok(cannot("The id_token_hint is not valid.")),
        },
        None => None,
    };
    let hint_client = hint
        .as_ref()
        .and_then(|h| h.str_claim("aud"))
        .map(str::to_string);
    let client_id = match (p.client_id, hint_client) {
        (Some(c), Some(h)) if c != h => {
            return Ok(cannot("client_id does not match the id_token_hint."))
        }
        (Some(c), _) => Some(c.to_string()),
        (None, h) => h,
    };
    // §3: post_logout_redirect_uri must be registered for the client (exact match).
    let redirect = match p.post_logout_redirect_uri {
        Some(uri) => {
            let Some(cid) = client_id.clone() else {
                return Ok(cannot("A redirect needs id_token_hint or client_id."));
            };
            let client = state
                .store
                .read(move |c| crate::store::clients::get(c, &cid))
                .await?;
            if !client.is_some_and(|c| c.post_logout_redirect_uris.iter().any(|r| r == uri)) {
                return Ok(cannot("The post-logout redirect URI is not registered."));
            }
            Some(uri.to_string())
        }
        None => None,
    };
    let session = crate::login::current(&state.store, now, browser.session).await?;
    // §2: the OP asks unless the hint belongs to this session: the same
    // person and the same login. Every ID token of a session, refreshed ones
    // included, carries the session's `sid`; a new login is a new session
    // (the hint of an ended session asks, even one from the same second).
    // ID tokens issued before `sid` existed fall back to auth_time.
    let hint_matches = match (&hint, &session) {
        (Some(h), Some(s)) => {
            h.str_claim("sub") == Some(s.user.id.as_str())
                && match h.str_claim("sid") {
                    Some(sid) => sid == crate::login::session_sid(&s.id_hash),
                    None => h.auth_time() == Some(s.session.auth_time),
                }
        }
        _ => false,
    };
    let confirmed = p.confirmed_by_post
        && match (browser.binding, p.csrf) {
            (Some(b), Some(csrf)) => constant_time_eq(logout_csrf(b).as_bytes(), csrf.as_bytes()),
            _ => false,
        };
    if session.is_some() && !hint_matches && !confirmed {
        let (binding, new_binding) = crate::login::browser_binding(browser.binding);
        return Ok(Reply {
            answer: Answer::LogoutConfirm {
                csrf: logout_csrf(&binding),
                post_logout_redirect_uri: redirect,
                client_id,
                state: p.state.map(str::to_string),
            },
            set_session: None,
            set_binding: new_binding.then_some(binding),
            clear_session: false,
        });
    }
    if let Some(s) = &session {
        let (h, uid) = (s.id_hash.clone(), s.user.id.clone());
        let mut e = AuditEvent::new(now, "logout", Mode::Person).person(Some(&uid));
        e.client_id = client_id.clone();
        state
            .store
            .write(move |c| {
                crate::store::sessions::delete_session(c, &h)?;
                crate::store::audit::insert(c, &e)
            })
            .await?;
    }
    let answer = match redirect {
        Some(uri) => Answer::AfterLogout {
            uri,
            state: p.state.map(str::to_string),
        },
        None => Answer::Message {
            title: "Signed out",
            message: "You are signed out of deputy.",
        },
    };
    Ok(Reply {
        answer,
        set_session: None,
        set_binding: None,
        clear_session: true,
    })
}
