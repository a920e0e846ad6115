//! Delegation policy for token exchange (RFC 8693): every hop may only narrow.
//! Pure functions over the rule, the subject token and the request.

use serde::Serialize;
use serde_json::{json, Value};

use super::{intersect, is_subset};

/// Which actor may obtain tokens for which target, and how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DelegationRule {
    pub id: String,
    pub actor: String,
    pub audience: String,
    /// The most scope the actor may get at this audience.
    pub scopes: Vec<String>,
    /// Longest lifetime of an issued token, in seconds.
    pub max_lifetime: i64,
    /// Longest `act` chain the issued token may carry.
    pub max_depth: i64,
    /// A broker client that may request on the actor's behalf.
    pub broker: Option<String>,
    pub created_at: i64,
    /// The issued token must be DPoP-bound to the key of the actor's proof
    /// (RFC 9449; deputy's rule, RFC 8693 is silent).
    pub require_dpop: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRefusal {
    /// Asked for more than the subject token and the rule allow together.
    Widening,
    /// Nothing is left after narrowing.
    Empty,
}

/// RFC 8693 §2.1 `scope`: the result lies within the subject token's scope AND
/// the rule's; omitted means that intersection. The actor's own scopes never
/// add anything.
pub fn narrow_scope(
    requested: Option<&[String]>,
    subject: &[String],
    rule: &[String],
) -> Result<Vec<String>, ScopeRefusal> {
    let allowed = intersect(subject, rule);
    let granted = match requested {
        Some(r) if !is_subset(r, &allowed) => return Err(ScopeRefusal::Widening),
        Some(r) => r.to_vec(),
        None => allowed,
    };
    if granted.is_empty() {
        return Err(ScopeRefusal::Empty);
    }
    Ok(granted)
}

/// The issued token expires at the earliest of: now + the rule's maximum,
/// now + what the caller asked for, the subject token's exp, the actor token's exp.
pub fn narrow_exp(
    now: i64,
    rule_max: i64,
    requested: Option<i64>,
    subject_exp: i64,
    actor_exp: Option<i64>,
) -> i64 {
    let mut exp = now.saturating_add(rule_max).min(subject_exp);
    if let Some(r) = requested {
        exp = exp.min(now.saturating_add(r));
    }
    if let Some(a) = actor_exp {
        exp = exp.min(a);
    }
    exp
}

/// RFC 8693 §4.1: the new `act` names the actor and nests the previous chain.
/// Only `sub` members are kept: `act` never carries exp, aud or scopes.
pub fn nest_act(actor: &str, previous: Option<&Value>) -> Value {
    match previous {
        Some(prev) => json!({ "sub": actor, "act": strip_act(prev) }),
        None => json!({ "sub": actor }),
    }
}

fn strip_act(v: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(sub) = v.get("sub") {
        out.insert("sub".into(), sub.clone());
    }
    if let Some(inner) = v.get("act") {
        out.insert("act".into(), strip_act(inner));
    }
    Value::Object(out)
}

/// Number of actors in an `act` chain.
pub fn depth(act: Option<&Value>) -> i64 {
    let mut n = 0;
    let mut cur = act;
    while let Some(a) = cur {
        n += 1;
        cur = a.get("act");
        if n > 64 {
            break;
        }
    }
    n
}

/// Every actor named in a chain, outermost (current) first.
pub fn actors(act: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = act;
    while let Some(a) = cur {
        if let Some(s) = a.get("sub").and_then(Value::as_str) {
            out.push(s.to_string());
        }
        cur = a.get("act");
        if out.len() > 64 {
            break;
        }
    }
    out
}

/// RFC 8693 §4.4: when the subject token names who may act (`may_act`), the
/// actor must be that party.
pub fn may_act_allows(may_act: Option<&Value>, actor: &str) -> bool {
    match may_act {
        None => true,
        Some(m) => m.get("sub").and_then(Value::as_str) == Some(actor),
    }
}

/// A task reference: 1 to 128 characters, each one a person can read (see
/// `is_shown_char`), so it is safe in logs, claims and the account page.
pub fn is_valid_task(t: &str) -> bool {
    (1..=128).contains(&t.chars().count()) && t.chars().all(is_shown_char)
}

/// A character of text shown to people (tasks, binding messages): no control
/// character, and none that is invisible or reorders text — bidirectional
/// formatting, zero-width and other format characters, tag characters, line
/// and paragraph separators — nor a private-use or non-character, so the
/// account page cannot show a text other than the one the agent sent.
pub fn is_shown_char(c: char) -> bool {
    !c.is_control()
        && !matches!(c,
            '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{180e}'
            | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
            | '\u{e000}'..='\u{f8ff}' | '\u{fdd0}'..='\u{fdef}'
            | '\u{e0000}'..='\u{e007f}' | '\u{f0000}'..='\u{10ffff}')
        && (u32::from(c) & 0xfffe) != 0xfffe
}
#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn scope_only_narrows() {
        let subject = v(&["notes:read", "notes:write", "profile"]);
        let rule = v(&["notes:read", "calendar:read"]);
        assert_eq!(
            narrow_scope(None, &subject, &rule).unwrap(),
            v(&["notes:read"])
        );
        assert_eq!(
            narrow_scope(Some(&v(&["notes:read"])), &subject, &rule).unwrap(),
            v(&["notes:read"])
        );
        // In the rule but not in the subject token: widening.
        assert_eq!(
            narrow_scope(Some(&v(&["calendar:read"])), &subject, &rule),
            Err(ScopeRefusal::Widening)
        );
        // In the subject token but not in the rule: widening.
        assert_eq!(
            narrow_scope(Some(&v(&["notes:write"])), &subject, &rule),
            Err(ScopeRefusal::Widening)
        );
        assert_eq!(
            narrow_scope(None, &v(&["profile"]), &rule),
            Err(ScopeRefusal::Empty)
        );
    }

    #[test]
    fn lifetime_is_the_earliest_bound() {
        assert_eq!(narrow_exp(1000, 300, None, 5000, None), 1300);
        assert_eq!(narrow_exp(1000, 300, Some(60), 5000, None), 1060);
        assert_eq!(
            narrow_exp(1000, 300, Some(600), 5000, None),
            1300,
            "asking for more gets no more"
        );
        assert_eq!(
            narrow_exp(1000, 300, None, 1100, None),
            1100,
            "never past the subject token"
        );
        assert_eq!(
            narrow_exp(1000, 300, None, 5000, Some(1050)),
            1050,
            "never past the actor token"
        );
    }

    #[test]
    fn act_nesting_keeps_only_subjects() {
        let first = nest_act("agent-x", None);
        assert_eq!(first, json!({"sub": "agent-x"}));
        let second = nest_act(
            "agent-y",
            Some(&json!({"sub": "agent-x", "exp": 5, "scope": "a"})),
        );
        assert_eq!(second, json!({"sub": "agent-y", "act": {"sub": "agent-x"}}));
        assert_eq!(depth(Some(&second)), 2);
        assert_eq!(depth(None), 0);
        assert_eq!(actors(Some(&second)), v(&["agent-y", "agent-x"]));
    }

    #[test]
    fn may_act_and_task_rules() {
        assert!(may_act_allows(None, "a"));
        assert!(may_act_allows(Some(&json!({"sub": "a"})), "a"));
        assert!(!may_act_allows(Some(&json!({"sub": "b"})), "a"));
        assert!(!may_act_allows(Some(&json!("a")), "a"));
        assert!(is_valid_task("ticket-42: summarise notes"));
        assert!(!is_valid_task(""));
        assert!(!is_valid_task("line\nbreak"));
        assert!(!is_valid_task(&"x".repeat(129)));
        assert!(is_valid_task(&"é".repeat(128)), "characters, not bytes");
        assert!(is_valid_task("Steuererklärung 2026 ✓"));
        assert!(!is_valid_task("tab\there"));
        assert!(!is_valid_task("del\u{7f}"));
        assert!(!is_valid_task("pay \u{202e}001$"), "right-to-left override");
        assert!(!is_valid_task("\u{2066}isolate"));
        for hidden in [
            '\u{061c}',
            '\u{200b}',
            '\u{200d}',
            '\u{00ad}',
            '\u{2028}',
            '\u{2029}',
            '\u{2060}',
            '\u{206a}',
            '\u{feff}',
            '\u{e0041}',
            '\u{e000}',
            '\u{10fffd}',
            '\u{fdd0}',
            '\u{fffe}',
            '\u{1fffe}',
        ] {
            assert!(
                !is_valid_task(&format!("tri{hidden}age")),
                "U+{:04X}",
                u32::from(hidden)
            );
        }
        for shown in [
            "Übersicht",
            "予約 42",
            "حجز",
            "Ελλάδα",
            "🚀 launch",
            "a\u{0301}",
        ] {
            assert!(is_valid_task(shown), "{shown}");
        }
    }
}
