//! The sentences the account page says after a withdrawal: what ended, in
//! plain words and counted.

use crate::account::withdraw::{ClientWithdrawn, TaskWithdrawn};

pub(super) fn tokens(n: usize) -> String {
    match n {
        1 => "1 token".to_string(),
        n => format!("{n} tokens"),
    }
}

/// ", N requests to you withdrawn", or nothing when there were none.
pub(super) fn requests_withdrawn(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => ", 1 request to you withdrawn".to_string(),
        n => format!(", {n} requests to you withdrawn"),
    }
}

pub(super) fn client_notice(client_id: &str, w: &ClientWithdrawn) -> String {
    if !w.changed_anything() {
        return format!("{client_id} held no access for you: nothing to withdraw.");
    }
    format!(
        "Withdrew {client_id}: {}, {} revoked{}.",
        if w.consent {
            "your consent forgotten"
        } else {
            "no remembered consent"
        },
        tokens(w.revoked),
        match w.grants {
            0 => String::new(),
            1 => ", 1 sign-in ended".to_string(),
            n => format!(", {n} sign-ins ended"),
        } + &requests_withdrawn(w.requests)
    )
}

pub(super) fn task_notice(client_id: &str, task: &str, w: &TaskWithdrawn) -> String {
    match (w.revoked, w.requests) {
        (0, 0) => format!("{client_id} held nothing for the task \u{201c}{task}\u{201d}."),
        (n, r) => format!(
            "Stopped the task \u{201c}{task}\u{201d} of {client_id}: {} revoked{}.",
            tokens(n),
            requests_withdrawn(r)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_count_the_requests_a_withdrawal_ended() {
        let task = |revoked, requests| TaskWithdrawn { revoked, requests };
        assert_eq!(
            task_notice("bot", "triage", &task(0, 0)),
            "bot held nothing for the task \u{201c}triage\u{201d}."
        );
        assert_eq!(
            task_notice("bot", "triage", &task(0, 1)),
            "Stopped the task \u{201c}triage\u{201d} of bot: 0 tokens revoked, 1 request to you withdrawn."
        );
        assert_eq!(
            task_notice("bot", "triage", &task(1, 2)),
            "Stopped the task \u{201c}triage\u{201d} of bot: 1 token revoked, 2 requests to you withdrawn."
        );
        let client = ClientWithdrawn {
            requests: 1,
            ..Default::default()
        };
        assert_eq!(
            client_notice("bot", &client),
            "Withdrew bot: no remembered consent, 0 tokens revoked, 1 request to you withdrawn."
        );
    }
}
