//! The audit trail: append-only events that answer "which person, which
//! agents, which task, under which rule". Events are written in the same
//! transaction as the change they describe, so the trail never disagrees with
//! the store.

use serde::Serialize;

/// Who performed the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A person, directly (login, consent).
    Person,
    /// A service for itself (client credentials).
    Service,
    /// A party acting for a person (token exchange, refresh of a person's grant by an agent).
    Delegated,
    /// An administrator (CLI or admin API).
    Admin,
    /// deputy itself (key rotation, reuse detection).
    System,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Person => "person",
            Mode::Service => "service",
            Mode::Delegated => "delegated",
            Mode::Admin => "admin",
            Mode::System => "system",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: i64,
    pub event: String,
    pub mode: String,
    pub outcome: String,
    pub person: Option<String>,
    pub client_id: Option<String>,
    pub client_kind: Option<String>,
    pub actor_chain: Option<String>,
    pub audience: Option<String>,
    pub scope: Option<String>,
    pub task: Option<String>,
    pub jti: Option<String>,
    pub parent_jti: Option<String>,
    pub rule_id: Option<String>,
    pub reason: Option<String>,
    pub detail: Option<String>,
}

impl AuditEvent {
    pub fn new(at: i64, event: &str, mode: Mode) -> Self {
        AuditEvent {
            at,
            event: event.to_string(),
            mode: mode.as_str().to_string(),
            outcome: "ok".to_string(),
            ..Default::default()
        }
    }

    pub fn refused(mut self, reason: &str) -> Self {
        self.outcome = "refused".to_string();
        self.reason = Some(reason.to_string());
        self
    }

    pub fn client(mut self, id: &str, kind: &str) -> Self {
        self.client_id = Some(id.to_string());
        self.client_kind = Some(kind.to_string());
        self
    }

    pub fn person(mut self, p: Option<&str>) -> Self {
        self.person = p.map(str::to_string);
        self
    }

    pub fn detail(mut self, d: serde_json::Value) -> Self {
        self.detail = Some(d.to_string());
        self
    }
}
