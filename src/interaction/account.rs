//! `/account` without a login session: a sign-in that comes back to the
//! account page. It is an interaction like any other (a row bound to this
//! browser, with its own CSRF token), so any instance can serve the login
//! form and its answer.

use crate::app::AppState;
use crate::error::OAuthError;
use crate::secret::{random_token, sha256_b64};
use crate::store::sessions::Interaction;

use super::{Answer, Browser, Pending, Reply, INTERACTION_TTL};

/// Start a sign-in for the account page and send the browser to its login form.
pub async fn start(state: &AppState, browser: Browser<'_>) -> Result<Reply, OAuthError> {
    let now = state.clock.now();
    // Each start is a row: the per-address limit of /authorize and login
    // posts keeps a flood from filling the store.
    if !state.login_by_address.allow(browser.address, now) {
        return Ok(Answer::TooManyRequests.into());
    }
    let (binding, new_binding) = crate::login::browser_binding(browser.binding);
    let interaction = Interaction {
        id: random_token(24),
        browser_hash: sha256_b64(binding.as_bytes()),
        csrf: random_token(24),
        request: Pending::Account.stored()?,
        login_done: false,
        expires_at: now + INTERACTION_TTL,
    };
    let id = interaction.id.clone();
    state
        .store
        .write(move |c| crate::store::sessions::insert_interaction(c, &interaction, now))
        .await?;
    Ok(Reply {
        answer: Answer::ToLoginForm { interaction: id },
        set_session: None,
        set_binding: new_binding.then_some(binding),
        clear_session: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_marker_reads_back_and_nothing_else_is_taken_for_it() {
        let stored = Pending::Account.stored().unwrap();
        assert_eq!(Pending::parse(&stored).unwrap(), Pending::Account);
        // A return path is never read from the row: anything else must be
        // an authorization request, or the row is unusable.
        assert!(Pending::parse(r#"{"continue":"https://evil.example/"}"#).is_err());
        assert!(Pending::parse("").is_err());
    }
}
