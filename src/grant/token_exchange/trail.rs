//! What the audit trail records about one exchange (granted or refused),
//! filled in as the request is evaluated.

use serde_json::{json, Value};

use crate::audit::{AuditEvent, Mode};
use crate::store::clients::Client;

/// What the audit trail records about an exchange, filled in as it is known.
#[derive(Default)]
pub struct Trail {
    pub person: Option<String>,
    pub chain: Option<Value>,
    pub target: Option<String>,
    pub scope_asked: Option<String>,
    pub scope_granted: Option<String>,
    pub task: Option<String>,
    pub rule_id: Option<String>,
    pub subject_jti: Option<String>,
    pub jti: Option<String>,
}

pub fn event(now: i64, client: &Client, t: &Trail) -> AuditEvent {
    let mut e = AuditEvent::new(now, "token_exchange", Mode::Delegated)
        .client(&client.id, client.kind.as_str())
        .person(t.person.as_deref());
    e.actor_chain = t.chain.as_ref().map(Value::to_string);
    e.audience = t.target.clone();
    e.scope = t.scope_granted.clone();
    e.task = t.task.clone();
    e.rule_id = t.rule_id.clone();
    e.parent_jti = t.subject_jti.clone();
    e.jti = t.jti.clone();
    // A granted exchange is a token issued: say what kind, like token_issued.
    e.detail = Some(
        match t.jti {
            Some(_) => json!({"scope_requested": t.scope_asked, "kind": "access"}),
            None => json!({"scope_requested": t.scope_asked}),
        }
        .to_string(),
    );
    e
}
