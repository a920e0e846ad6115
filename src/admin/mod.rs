//! Administration: who may administer, and the domain behind both the admin
//! API (`/admin`) and the management CLI — listing and tracing tokens,
//! revoking with cascade, reading the audit trail, withdrawing consent.
//!
//! The API and the CLI call the same functions; the API runs them inside the
//! store's writer (one savepoint of a group commit), the CLI inside one
//! IMMEDIATE transaction on its own connection. Either way a revocation, its
//! cascade and its audit event commit together or not at all.

pub mod caller;
pub mod clients;
pub mod revoke;
pub mod view;

pub use caller::{authorize, AdminCaller, ADMIN_SCOPE};

use serde_json::{json, Value};

/// Default and largest page for the admin listings.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// What a revocation is aimed at. Exactly one per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// One token and everything derived from it.
    Jti(String),
    /// Everything whose subject is this person or service, their grants and
    /// refresh families.
    Sub(String),
    /// Everything issued to this client, its grants and refresh families.
    Client(String),
    /// What an actor can still do — tokens issued to it, naming it in their
    /// `act` chain, or addressed to it (which it may exchange) — and
    /// everything derived from those; for one person only when `sub` is given.
    Actor(String, Option<String>),
    /// A grant, its refresh family and every token issued under it.
    Grant(String),
}

impl Selector {
    /// The request member (API) naming this selector.
    pub fn name(&self) -> &'static str {
        match self {
            Selector::Jti(_) => "jti",
            Selector::Sub(_) => "sub",
            Selector::Client(_) => "client_id",
            Selector::Actor(..) => "actor",
            Selector::Grant(_) => "grant_id",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Selector::Jti(v)
            | Selector::Sub(v)
            | Selector::Client(v)
            | Selector::Actor(v, _)
            | Selector::Grant(v) => v,
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Selector::Actor(a, Some(s)) => json!({ "actor": a, "sub": s }),
            _ => json!({ self.name(): self.value() }),
        }
    }

    /// Exactly one of the candidates (or `actor` with `sub`: what one agent
    /// can still do for one person), none of them empty; `Err` says what is
    /// wrong in words that fit both the API and the CLI.
    pub fn exactly_one(
        jti: Option<String>,
        sub: Option<String>,
        client: Option<String>,
        actor: Option<String>,
        grant: Option<String>,
    ) -> Result<Selector, &'static str> {
        let (sub, actor) = match (sub, actor) {
            (Some(s), Some(a)) => {
                if s.is_empty() || s.len() > 512 {
                    return Err("the selector value must be 1-512 characters");
                }
                (None, Some((a, Some(s))))
            }
            (s, a) => (s, a.map(|a| (a, None))),
        };
        let mut chosen: Vec<Selector> = [
            jti.map(Selector::Jti),
            sub.map(Selector::Sub),
            client.map(Selector::Client),
            actor.map(|(a, s)| Selector::Actor(a, s)),
            grant.map(Selector::Grant),
        ]
        .into_iter()
        .flatten()
        .collect();
        match chosen.pop() {
            Some(s) if chosen.is_empty() => {
                if s.value().is_empty() || s.value().len() > 512 {
                    Err("the selector value must be 1-512 characters")
                } else {
                    Ok(s)
                }
            }
            _ => Err(
                "exactly one selector is required: jti, sub, client_id, actor (optionally with sub) or grant_id",
            ),
        }
    }
}

/// Who performed an administrative change, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The admin API, with the caller's admin token.
    Api(AdminCaller),
    /// The management CLI (whoever can open the database).
    Cli,
    /// deputy itself: a dynamically registered client unused too long.
    Expiry,
    /// The person themself, signed in on their account page (`/account`):
    /// `sid` is the login session's public identifier (never the cookie).
    Person { sid: String },
}

impl Origin {
    /// Who acted, as the audit event's `mode`: the person on their own
    /// account page, an administrator, or deputy itself (an unused
    /// registered client expiring: nobody asked for it).
    pub fn mode(&self) -> crate::audit::Mode {
        match self {
            Origin::Person { .. } => crate::audit::Mode::Person,
            Origin::Api(_) | Origin::Cli => crate::audit::Mode::Admin,
            Origin::Expiry => crate::audit::Mode::System,
        }
    }

    /// Attach the origin to an audit event: the admin client as the event's
    /// client, and `via` (plus the admin token's `jti`) in its detail.
    pub fn stamp(
        &self,
        event: crate::audit::AuditEvent,
        detail: &mut serde_json::Map<String, Value>,
    ) -> crate::audit::AuditEvent {
        match self {
            Origin::Api(c) => {
                detail.insert("via".into(), json!("api"));
                detail.insert("admin_jti".into(), json!(c.jti));
                event.client(&c.client_id, &c.client_kind)
            }
            Origin::Cli => {
                detail.insert("via".into(), json!("cli"));
                event
            }
            Origin::Expiry => {
                detail.insert("via".into(), json!("registration_expiry"));
                event
            }
            Origin::Person { sid } => {
                detail.insert("via".into(), json!("account"));
                detail.insert("sid".into(), json!(sid));
                event
            }
        }
    }
}

/// A page size: 1..=MAX_LIMIT, DEFAULT_LIMIT when absent.
pub fn check_limit(limit: Option<i64>) -> Result<i64, &'static str> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err("limit must be between 1 and 1000"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn exactly_one_selector() {
        assert_eq!(
            Selector::exactly_one(None, s("p"), None, None, None),
            Ok(Selector::Sub("p".into()))
        );
        assert!(Selector::exactly_one(None, None, None, None, None).is_err());
        assert!(Selector::exactly_one(s("j"), s("p"), None, None, None).is_err());
        assert!(Selector::exactly_one(None, None, None, s(""), None).is_err());
        assert_eq!(
            Selector::Grant("g".into()).to_json(),
            json!({"grant_id": "g"})
        );
    }

    #[test]
    fn limits() {
        assert_eq!(check_limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(check_limit(Some(1000)), Ok(1000));
        assert!(check_limit(Some(0)).is_err());
        assert!(check_limit(Some(1001)).is_err());
    }
}
