//! The optional approval webhook: after a request for a known person is
//! committed, deputy POSTs a small JSON to the `approval_webhook` URL so the
//! person learns there is something to approve. It carries who, which
//! client, which task, the binding message and a link to the account page;
//! never a token, an `auth_req_id` or the request's handle. Sent with the
//! safe outbound fetcher, a few tries, off the request path.

use std::time::Duration;

use serde::Serialize;

use crate::fetch::Fetcher;

/// Tries before giving up.
pub const TRIES: u32 = 3;
/// The whole notification, every try and wait included.
pub const OVERALL_DEADLINE: Duration = Duration::from_secs(30);

/// The webhook's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalNotice {
    /// The person's username.
    pub person: String,
    pub client_id: String,
    pub client_name: String,
    pub task: Option<String>,
    pub binding_message: Option<String>,
    /// Where the person approves or denies.
    pub account_url: String,
}

/// Send `notice` to `url`: up to `TRIES` tries, 1 s then 2 s apart, all
/// within `OVERALL_DEADLINE`. Failures are logged (without the body) and
/// change nothing: the request waits on the account page either way.
pub async fn send(fetcher: &Fetcher, url: &str, notice: &ApprovalNotice) {
    let body = match serde_json::to_vec(notice) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "approval notice could not be encoded");
            return;
        }
    };
    let attempts = async {
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=TRIES {
            match fetcher.post_json(url, body.clone()).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "approval webhook failed");
                }
            }
            if attempt < TRIES {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        false
    };
    match tokio::time::timeout(OVERALL_DEADLINE, attempts).await {
        Ok(true) => tracing::info!(client_id = %notice.client_id, "approval webhook sent"),
        Ok(false) => tracing::warn!(client_id = %notice.client_id, "approval webhook gave up"),
        Err(_) => tracing::warn!(client_id = %notice.client_id, "approval webhook timed out"),
    }
}
